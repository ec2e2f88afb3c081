"""``cf-ref toy pipeline`` / ``cf-ref toy compare``: options and input checks (the runs themselves are covered
by tests/toy/test_pipeline.py on a tiny configuration)."""

from click.testing import CliRunner

from cf_ref.cli import main
from toy.recipes import Recipe


def test_pipeline_help_lists_every_recipe():
    result = CliRunner().invoke(main, ["toy", "pipeline", "--help"])
    assert result.exit_code == 0, result.output
    assert all(r.value in result.output for r in Recipe)
    assert "--real-score" in result.output


def test_bad_inputs_are_refused():
    runner = CliRunner()
    bad_recipe = runner.invoke(main, ["toy", "pipeline", "--recipe", "dmd-only"])
    assert bad_recipe.exit_code != 0 and "Invalid value for '--recipe'" in bad_recipe.output
    no_seeds = runner.invoke(main, ["toy", "compare", "--seeds", "0"])
    assert no_seeds.exit_code != 0 and "need at least one seed" in no_seeds.output
