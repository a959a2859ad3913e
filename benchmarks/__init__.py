"""emocli benchmarks: scripts run as modules from the repository root (see benchmarks/README.md)."""
