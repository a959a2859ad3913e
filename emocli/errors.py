"""One error type for every known failure, and one place that turns failures into a line."""

from __future__ import annotations


class EmocliError(Exception):
    """A failure the user can act on: printed as one line (plus an optional hint), never a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(EmocliError):
    """Bad input data or arguments: a file, row or column that is wrong."""

    exit_code = 2


class ConfigError(EmocliError):
    """A malformed registry or configuration file."""

    exit_code = 2


class ModelNotFoundError(EmocliError):
    """A model that is neither a local directory, a registry name, in the cache, nor reachable."""

    exit_code = 3


class HubError(EmocliError):
    """The Hub (or the endpoint standing in for it) refused or could not be reached."""

    exit_code = 4


class StoreError(EmocliError):
    """The DuckDB store cannot be opened or written (locked, missing table, bad run id)."""

    exit_code = 5


def as_emocli_error(exc: BaseException) -> EmocliError | None:
    """Map a known third-party exception to an EmocliError, without importing those libraries."""
    if isinstance(exc, EmocliError):
        return exc
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if module.lstrip("_").startswith("duckdb"):  # duckdb 2 raises from the `_duckdb` extension module
        if "lock" in text.lower():
            return StoreError(f"database is locked by another process: {text}",
                              hint="wait for the other emocli/duckdb process to finish")
        return StoreError(f"DuckDB: {text}")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"file not found: {exc.filename or text}")
    if isinstance(exc, PermissionError):
        return InputError(f"permission denied: {exc.filename or text}")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"expected a file, got a directory: {exc.filename or text}")
    return None
