"""The package skeleton: version, help, errors as one line."""

from emocli import __version__


def test_version(cli):
    result = cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"emocli {__version__}"


def test_help_lists_commands(cli):
    result = cli(["--help"])
    assert result.exit_code == 0
    assert "emocli" in result.stdout
