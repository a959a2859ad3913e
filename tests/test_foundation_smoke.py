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


def test_error_text_with_brackets_is_printed_verbatim(cli, tmp_path):
    bad = tmp_path / "[weird].toml"
    bad.write_text("not = [valid")
    result = cli(["models", "list", "--registry", bad])
    assert result.exit_code == 2
    assert "[weird].toml" in result.stderr
    assert "Traceback" not in result.stderr
