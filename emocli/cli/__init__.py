"""The command line: the Typer app (`app.py`), one module per command group (`commands/`), rendering."""
