from click.testing import CliRunner

from cf_ref.cli import main


def test_help_at_every_level():
    runner = CliRunner()
    for args in ([], ["toy"], ["full"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_toy_injectivity_command_prints_a_table():
    result = CliRunner().invoke(main, ["toy", "injectivity", "--frames", "3", "--samples", "32", "--resamples", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("| gaussian_ar1_d1 | causal")]
    assert len(lines) == 1 and all(float(v) < 1e-3 for v in lines[0].split("|")[3:-1])
