"""Word attributions: LIME, integrated gradients, corpus-level aggregation (`core`)."""
