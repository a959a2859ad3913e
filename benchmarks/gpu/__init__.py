"""Benchmarks for a lent GPU machine (see benchmarks/gpu/README.md)."""
