"""``cf-ref toy …`` (toy/cli.py): options, choices and input checks; the commands' work is tested on the library
functions they call (tests/toy/test_runner.py, test_compare.py)."""

from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.recipes import Recipe


def test_injectivity_command_prints_a_table():
    result = CliRunner().invoke(main, ["toy", "injectivity", "--frames", "3", "--samples", "32", "--resamples", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("| gaussian_ar1_d1 | ar |")]
    assert len(lines) == 1 and all(float(v) < 1e-3 for v in lines[0].split("|")[3:-1])


def test_pipeline_help_lists_every_recipe():
    result = CliRunner().invoke(main, ["toy", "pipeline", "--help"])
    assert result.exit_code == 0, result.output
    assert all(r.value in result.output for r in Recipe)
    assert "--real-score" in result.output


def test_bad_inputs_are_refused(tmp_path):
    runner = CliRunner()
    bad_recipe = runner.invoke(main, ["toy", "pipeline", "--recipe", "dmd-only"])
    assert bad_recipe.exit_code != 0 and "Invalid value for '--recipe'" in bad_recipe.output
    no_seeds = runner.invoke(main, ["toy", "compare", "--seeds", "0"])
    assert no_seeds.exit_code != 0 and "need at least one seed" in no_seeds.output
    bad_preset = runner.invoke(main, ["toy", "run", "--preset", "huge"])
    assert bad_preset.exit_code != 0 and "Invalid value for '--preset'" in bad_preset.output
    missing = runner.invoke(main, ["toy", "plots", "--from", str(tmp_path)])
    assert missing.exit_code != 0 and "metrics.json" in str(missing.exception)
