"""The DuckDB store: schema, runs, chunked appends with checkpoints (`core`)."""
