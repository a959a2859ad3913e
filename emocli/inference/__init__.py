"""Scoring texts: the engine (`engine.score_batch`, the pipelined runner) and `tag` (files -> engine -> store)."""
