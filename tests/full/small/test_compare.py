"""``cf-ref full compare --preset smoke``: every recipe end to end, resume, one-line errors, nothing overwritten."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.recipes import Recipe
from full.recipes import Stage
from full.small.compare import COMPARED
from full.small.run import providers


def invoke(*args: str):
    return CliRunner().invoke(main, ["full", *args])


def test_shared_stages_run_once_by_the_first_recipe_that_has_them():
    owners = providers(COMPARED)
    assert owners[Recipe.CAUSAL_FORCING_PP][Stage.AR_DIFFUSION] is Recipe.CAUSAL_FORCING
    assert owners[Recipe.CAUSAL_FORCING_PP][Stage.CD] is Recipe.CAUSAL_FORCING_PP
    assert owners[Recipe.CAUSVID][Stage.ODE_PAIRS] is Recipe.SELF_FORCING
    assert owners[Recipe.CAUSVID][Stage.ODE] is Recipe.SELF_FORCING
    assert owners[Recipe.SELF_FORCING][Stage.ODE_PAIRS] is Recipe.SELF_FORCING  # bidirectional, not the AR teacher's
    assert all(owners[r][Stage.DMD] is r for r in COMPARED)


def test_smoke_compare_end_to_end_then_resumes_without_retraining(tmp_path):
    out = tmp_path / "cmp"
    result = invoke("compare", "--preset", "smoke", "--seeds", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "compare.json").read_text())
    assert doc["recipes"] == [r.value for r in COMPARED] and doc["seeds"] == [0]
    for r in COMPARED:
        for when in ("init", "dmd"):
            stats = doc["summary"][f"{r.value}/{when}"]
            assert set(stats) >= {
                "dynamic_degree",
                "physics_error",
                "iou",
                "bad_frames",
                "follows_all",
                "energy_distance",
            }
    assert doc["summary"]["data"]["follows_all"]["mean"] == 1.0
    eta = doc["injectivity"]
    assert set(eta) == {"bidirectional", "ar"} and all(len(v) == 6 for v in eta.values())
    assert max(eta["ar"]) == 0  # teacher forcing: a frame's output depends on its own block's noise only
    assert (out / "base" / "base-model" / "config.json").is_file()  # one base model for every seed
    assert not (out / "seed-0" / "base-model").exists()
    assert doc["base_model"]["shared"] and doc["base_model"]["folder"] == "base/base-model"
    assert "One base model for every seed" in (out / "compare.md").read_text()
    assert not (out / "seed-0" / "causvid" / "ode").exists()  # shared with self-forcing
    assert not (out / "seed-0" / "causal-forcing-pp" / "ar-diffusion").exists()  # shared with causal-forcing
    for stem in ("metrics", "strips", "iou_by_frame", "losses"):
        assert (out / "figures" / f"{stem}.png").is_file() and (out / "figures" / f"{stem}.pdf").is_file()
    assert {p.stem for p in (out / "videos").glob("*.mp4")} == {"data", *(r.value for r in COMPARED)}
    assert "| causal-forcing/dmd |" in (out / "compare.md").read_text()
    weights = out / "seed-0" / "causal-forcing" / "dmd" / "final" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = invoke("compare", "--preset", "smoke", "--seeds", "1", "--out", str(out), "--no-figures")
    assert again.exit_code == 0, again.output
    assert weights.stat().st_mtime_ns == before  # finished stages reused
    assert json.loads((out / "compare.json").read_text())["summary"] == doc["summary"]


def test_bad_input_is_one_line_and_overwrites_nothing(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare-request.json").write_text(json.dumps({"preset": "smoke", "variants": []}))
    (out / "compare.json").write_text("{}")
    cases = [
        (["--preset", "huge"], "unknown small-track preset 'huge'"),
        (["--recipe", "magic"], "unknown recipe 'magic'"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--variant", "dmd.score_shift=8"], "holds another comparison"),
        (["--variant", "no-equals-sign"], "must look like section.key=value"),
    ]
    for extra, message in cases:
        result = invoke("compare", "--preset", "smoke", "--seeds", "1", "--out", str(out), *extra)
        assert result.exit_code != 0
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    stranger = tmp_path / "other"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    result = invoke("compare", "--preset", "smoke", "--out", str(stranger))
    assert result.exit_code != 0 and "holds no comparison" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["compare-request.json", "compare.json"]
    assert (out / "compare.json").read_text() == "{}" and [p.name for p in stranger.iterdir()] == ["notes.txt"]
