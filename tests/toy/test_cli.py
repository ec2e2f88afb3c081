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
    assert no_seeds.exit_code != 0 and "'--seeds': 0 is not in the range x>=1" in no_seeds.output
    bad_preset = runner.invoke(main, ["toy", "run", "--preset", "huge"])
    assert bad_preset.exit_code != 0 and "Invalid value for '--preset'" in bad_preset.output
    missing = runner.invoke(main, ["toy", "plots", "--from", str(tmp_path)])
    assert missing.exit_code == 1 and "is not a finished `cf-ref toy run` folder (no metrics.json" in missing.output


def test_numbers_that_used_to_raise_tracebacks_are_refused_by_their_option(tmp_path):
    cases = [
        (["run", "--threads", "0"], "'--threads': 0 is not in the range x>=1"),
        (["run", "--workers", "0"], "'--workers': 0 is not in the range x>=1"),
        (["pipeline", "--recipe", "causal-forcing", "--threads", "0"], "'--threads'"),
        (["injectivity", "--samples", "0"], "'--samples': 0 is not in the range x>=1"),
        (["injectivity", "--resamples", "1"], "'--resamples': 1 is not in the range x>=2"),
        (["injectivity", "--dim", "-1"], "'--dim': -1 is not in the range x>=1"),
        (["injectivity", "--frames", "0"], "'--frames'"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(
            main, ["toy", *args, "--out", str(tmp_path / "o")] if args[0] == "run" else ["toy", *args]
        )
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, args
    assert not (tmp_path / "o").exists()


def test_run_refuses_to_replace_an_earlier_run(tmp_path):
    """The check comes before any work; the earlier files are left as they were."""
    from toy.run_files import METRICS_FILE, earlier_results

    (tmp_path / METRICS_FILE).write_text('{"earlier": true}')
    assert earlier_results(tmp_path) == [tmp_path / METRICS_FILE]
    result = CliRunner().invoke(main, ["toy", "run", "--out", str(tmp_path), "--no-plots"])
    assert result.exit_code == 1 and "holds an earlier run (metrics.json); pass --overwrite" in result.output
    assert (tmp_path / METRICS_FILE).read_text() == '{"earlier": true}'
    empty = CliRunner().invoke(main, ["toy", "run", "--out", ""])
    assert empty.exit_code == 1 and "empty" in empty.output
