"""Shared by the benchmark scripts: where results go, and what every result names (the CPU it ran on and the
versions of the libraries that move the numbers).

The scripts run as modules from the repository root (`python -m benchmarks.throughput ...`), so they import this
as `benchmarks.common` and emocli from the working tree.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def cpu_model(default: str = "unknown") -> str:
    """The CPU's model name from /proc/cpuinfo, or `default` where there is none (not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries whose behaviour moves the numbers (DuckDB's buffer pool, the tokenizer, ...)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {name: installed(name) for name in ("transformers", "tokenizers", "duckdb", "polars", "pyarrow", "onnxruntime", "onnx")}
