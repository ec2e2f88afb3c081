"""full.pipeline: a recipe's chain stage by stage equals the whole run; an interrupted stage resumes bit for bit;
work on disk is never overwritten without ``--resume``."""

from __future__ import annotations

import pytest
import torch

from cf_ref.io import load_tensors
from full.checkpoint import CheckpointError
from full.config import ConfigError, build_config, load_config
from full.distributed import DistContext
from full.logs import read_metrics
from full.pipeline import run_training
from full.recipes import Stage
from full.train import StageStateError

CTX = DistContext()

TINY_CHAIN = [
    "model.tiny_base.steps=0",
    "model.tiny_base.videos=8",
    "logging.progress=false",
    "logging.sample_count=0",
    "ar_diffusion.loop.steps=2",
    "ar_diffusion.loop.batch_size=2",
    "ode_pairs.max_pairs=4",
    "schedule.ode_steps=4",
    "ode.loop.steps=2",
    "ode.loop.batch_size=2",
    "dmd.loop.steps=7",
    "dmd.loop.checkpoint_every=3",
    "dmd.ema_start=1",
]


def test_kill_and_resume_equals_an_uninterrupted_run_bitwise(tmp_path):
    """DMD (two optimisers, EMA, random exit steps, critic/generator schedule) interrupted after 4 of 7 steps
    (last checkpoint at 3) and resumed: every final tensor equals the uninterrupted run's, bit for bit."""
    whole = build_config(preset="tiny", overrides=[f"out={tmp_path / 'a'}", *TINY_CHAIN])
    run_training(whole, ctx=CTX)
    split = build_config(preset="tiny", overrides=[f"out={tmp_path / 'b'}", *TINY_CHAIN])
    for stage in (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.ODE):
        run_training(split, stage=stage, ctx=CTX)
    run_training(split, stage=Stage.DMD, ctx=CTX, stop_after=4)
    assert not (tmp_path / "b" / "dmd" / "final").exists()
    with pytest.raises(StageStateError, match="pass --resume"):
        run_training(split, ctx=CTX)
    run_training(split, resume=True, ctx=CTX)
    for name in ("model", "ema", "critic"):
        a = load_tensors(tmp_path / "a" / "dmd" / "final" / f"{name}.safetensors")
        b = load_tensors(tmp_path / "b" / "dmd" / "final" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    la = read_metrics(tmp_path / "a" / "dmd" / "metrics.jsonl")
    lb = read_metrics(tmp_path / "b" / "dmd" / "metrics.jsonl")
    strip = [{k: v for k, v in r.items() if k not in ("time", "step_time_s")} for r in la]
    assert strip == [{k: v for k, v in r.items() if k not in ("time", "step_time_s")} for r in lb]


AR_ONLY = [*TINY_CHAIN, "ar_diffusion.loop.steps=4", "ar_diffusion.loop.checkpoint_every=1"]


def test_a_stage_re_run_with_settings_finished_stages_did_not_use_is_refused(tmp_path):
    """``--stage ode-pairs model.block_size=1`` after ar-diffusion finished with block size 2: refused, listing the
    difference, and config.yaml keeps what the finished stage used; a later stage's own setting is accepted."""
    first = build_config(preset="tiny", out=str(tmp_path), overrides=TINY_CHAIN)
    run_training(first, stage=Stage.AR_DIFFUSION, ctx=CTX)
    saved = (tmp_path / "config.yaml").read_text()
    changed = build_config(preset="tiny", out=str(tmp_path), overrides=[*TINY_CHAIN, "model.block_size=1"])
    with pytest.raises(ConfigError) as info:
        run_training(changed, stage=Stage.ODE_PAIRS, ctx=CTX)
    assert "model.block_size: 2 → 1 (stage(s) ar-diffusion already ran with the old value)" in str(info.value)
    assert (tmp_path / "config.yaml").read_text() == saved and not (tmp_path / "ode-pairs").exists()
    later = build_config(preset="tiny", out=str(tmp_path), overrides=[*TINY_CHAIN, "ode_pairs.max_pairs=2"])
    run_training(later, stage=Stage.ODE_PAIRS, ctx=CTX)
    assert load_config(tmp_path / "config.yaml").ode_pairs.max_pairs == 2


def test_every_bad_path_is_found_before_the_first_step(tmp_path):
    """Four wrong paths of four stages in one message, before anything is written (no folder is created)."""
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    bad = [
        f"dmd.real_score_path={tmp_path}/no-model",
        f"logging.vae={tmp_path}/no-vae",
        f"data.prompts={tmp_path}/no-prompts",
        f"ode.init={tmp_path}/garbage.safetensors",
    ]
    config = build_config(preset="tiny", out=str(tmp_path / "run"), overrides=[*TINY_CHAIN, *bad])
    with pytest.raises(ConfigError) as info:
        run_training(config, ctx=CTX)
    text = str(info.value)
    assert "(4 problem(s), nothing was written)" in text
    for setting in ("dmd.real_score_path", "logging.vae", "data.prompts", "garbage.safetensors"):
        assert setting in text
    assert not (tmp_path / "run").exists()


def test_a_latent_size_that_does_not_fit_the_model_is_refused_before_the_set_is_written(tmp_path):
    config = build_config(preset="tiny", out=str(tmp_path / "run"), overrides=[*TINY_CHAIN, "video.latent_height=7"])
    with pytest.raises(ConfigError, match="latent_height × latent_width = 7 × 8 is not a multiple of"):
        run_training(config, ctx=CTX)
    assert not (tmp_path / "run").exists()


def test_resume_accepts_changes_that_do_not_alter_finished_work(tmp_path, capsys):
    whole = build_config(preset="tiny", out=str(tmp_path), overrides=TINY_CHAIN)
    run_training(whole, stage=Stage.AR_DIFFUSION, ctx=CTX)
    vae = tmp_path / "vae"
    from full.tiny import tiny_vae

    tiny_vae(seed=1).save_pretrained(vae)
    fixed = [*TINY_CHAIN, f"logging.vae={vae}", "dmd.guidance_scale=1.5", "ar_diffusion.loop.checkpoint_every=5"]
    resumed = build_config(preset="tiny", out=str(tmp_path), overrides=fixed)
    run_training(resumed, stage=Stage.ODE_PAIRS, resume=True, ctx=CTX)
    said = capsys.readouterr().out
    assert "logging.vae: None →" in said and "dmd.guidance_scale: 1.0 → 1.5 (only stages that have not started" in said
    assert load_config(tmp_path / "config.yaml").dmd.guidance_scale == 1.5
    refused = build_config(preset="tiny", out=str(tmp_path), overrides=[*fixed, "ar_diffusion.optim.lr=0.5"])
    with pytest.raises(ConfigError, match=r"ar_diffusion.optim.lr: 0.001 → 0.5 \(stage\(s\) ar-diffusion already ran"):
        run_training(refused, stage=Stage.ODE, resume=True, ctx=CTX)


def test_a_moved_run_resumes_and_stale_temporaries_are_removed(tmp_path, capsys):
    """Interrupted in one folder, moved, resumed from the new place: the final weights equal an uninterrupted
    run's bit for bit; the temporary folders a kill left behind are gone."""
    run_training(build_config(preset="tiny", out=str(tmp_path / "a"), overrides=AR_ONLY), Stage.AR_DIFFUSION, ctx=CTX)
    b = build_config(preset="tiny", out=str(tmp_path / "b"), overrides=AR_ONLY)
    run_training(b, Stage.AR_DIFFUSION, ctx=CTX, stop_after=2)
    checkpoints = tmp_path / "b" / "ar-diffusion" / "checkpoints"
    (checkpoints / ".step-00000003.ab12cd34").mkdir()  # a checkpoint being assembled when the run was killed
    (checkpoints / ".step-00000003.ab12cd34" / "teacher.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "b" / "ar-diffusion" / ".metrics.zz99yy88.tmp.jsonl").write_text("torn")
    (tmp_path / "b").rename(tmp_path / "moved")
    moved = build_config(preset="tiny", out=str(tmp_path / "moved"), overrides=AR_ONLY)
    run_training(moved, Stage.AR_DIFFUSION, resume=True, ctx=CTX)
    assert "removed 2 temporary file(s) left by an interrupted run" in capsys.readouterr().out
    assert not list((tmp_path / "moved").rglob(".step-*")) and not list((tmp_path / "moved").rglob("*.tmp.*"))
    a = load_tensors(tmp_path / "a" / "ar-diffusion" / "final" / "model.safetensors")
    m = load_tensors(tmp_path / "moved" / "ar-diffusion" / "final" / "model.safetensors")
    assert a.keys() == m.keys() and all(torch.equal(a[k], m[k]) for k in a)
    assert load_config(tmp_path / "moved" / "config.yaml").data.latents == str(tmp_path / "moved" / "data" / "latents")


def _flip(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10  # inside the tensor data: the file still loads, only its checksum differs
    path.write_bytes(bytes(raw))


def test_a_byte_flipped_checkpoint_is_found_and_the_previous_one_resumes_exactly(tmp_path, capsys):
    whole = build_config(preset="tiny", out=str(tmp_path / "a"), overrides=AR_ONLY)
    run_training(whole, Stage.AR_DIFFUSION, ctx=CTX)
    split = build_config(preset="tiny", out=str(tmp_path / "b"), overrides=AR_ONLY)
    run_training(split, Stage.AR_DIFFUSION, ctx=CTX, stop_after=3)  # checkpoints at steps 2 and 3 kept
    _flip(tmp_path / "b" / "ar-diffusion" / "checkpoints" / "step-00000003" / "teacher.safetensors")
    run_training(split, Stage.AR_DIFFUSION, resume=True, ctx=CTX)
    said = capsys.readouterr().out
    assert "step-00000003 is corrupt" in said and "resumed from" in said and "step-00000002 at step 2" in said
    a = load_tensors(tmp_path / "a" / "ar-diffusion" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "b" / "ar-diffusion" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # an earlier stage's output is verified when the next stage reads it
    _flip(tmp_path / "b" / "ar-diffusion" / "final" / "model.safetensors")
    with pytest.raises(CheckpointError, match="ar teacher weights: .*final/model.safetensors is corrupt"):
        run_training(split, Stage.ODE_PAIRS, ctx=CTX)


def test_a_run_folder_written_by_an_older_cf_ref_is_named(tmp_path):
    """A config.yaml from before the ``schedule`` section: the re-run says which file and which settings."""
    config = build_config(preset="tiny", out=str(tmp_path), overrides=TINY_CHAIN)
    (tmp_path / "config.yaml").write_text("recipe: causal-forcing\nmodel:\n  shift: 5.0\n")
    with pytest.raises(ConfigError) as info:
        run_training(config, stage=Stage.AR_DIFFUSION, ctx=CTX)
    text = str(info.value)
    assert f"{tmp_path / 'config.yaml'} cannot be read (written by an older cf-ref?)" in text
    assert "model.shift is now schedule.shift" in text


@pytest.mark.parametrize("recipe", ["causal-forcing", "causal-forcing-pp"])
def test_every_stage_runs_on_the_tiny_ti2v_5b_model(tmp_path, recipe):
    """The Wan2.2-TI2V-5B-shaped tiny preset (48 latent channels) through each recipe's chain, a few steps a stage:
    AR diffusion, ODE pairs, ODE (causal-forcing) or CD (causal-forcing-pp), and DMD."""
    from full.model_files import load_transformer

    overrides = [*TINY_CHAIN, "dmd.loop.steps=2", "cd.loop.steps=2", "cd.loop.batch_size=2"]
    config = build_config(preset="tiny-ti2v-5b", recipe=recipe, out=str(tmp_path), overrides=overrides)
    results = run_training(config, ctx=CTX)
    init = [Stage.ODE_PAIRS, Stage.ODE] if recipe == "causal-forcing" else [Stage.CD]
    assert list(results) == [Stage.AR_DIFFUSION, *init, Stage.DMD]
    base = load_transformer(tmp_path / "base-model", "base", torch.float32)
    assert base.config.in_channels == 48 and base.config.num_attention_heads == 3
    final = load_tensors(results[Stage.DMD] / "model.safetensors")
    assert final["patch_embedding.weight"].shape[1] == 48


def test_one_step_image_to_video_students_train_on_the_tiny_ti2v_5b_model(tmp_path):
    """Causal Forcing++'s 1-step student (first block on 4 steps) trained frame 0 = the data's first frame, on the
    5B-shaped tiny model: the chain runs, and the DMD previews / checkpoints exist."""
    overrides = [*TINY_CHAIN, "dmd.loop.steps=2", "cd.loop.steps=2", "cd.loop.batch_size=2",
                 "schedule.timesteps=[1000]", "dmd.first_block_steps=4", "dmd.image_to_video=true"]  # fmt: skip
    config = build_config(preset="tiny-ti2v-5b", recipe="causal-forcing-pp", out=str(tmp_path), overrides=overrides)
    assert config.schedule.timesteps == (1000.0,) and config.dmd.first_block_steps == 4 and config.dmd.image_to_video
    results = run_training(config, ctx=CTX)
    assert (results[Stage.DMD] / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="dmd.first_block_steps must be >= 1 with generator_input self"):
        build_config(preset="tiny", overrides=["dmd.first_block_steps=0"])
