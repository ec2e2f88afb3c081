from click.testing import CliRunner

from cf_ref.cli import main


def test_help_at_every_level():
    runner = CliRunner()
    for args in ([], ["toy"], ["full"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output
