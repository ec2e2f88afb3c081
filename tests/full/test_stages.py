"""The stages on tiny models and the synthetic set: losses decrease, the pairs' injectivity, DMD's direction."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cf_ref.distill.dmd import dmd_gradient
from cf_ref.injectivity import non_injectivity_index
from cf_ref.masks import AttentionMode, block_causal_visibility, teacher_forcing_visibility
from cf_ref.schedule import few_step_sigmas, interpolate, x0_from_velocity
from full.config import PairTeacher, Stage, build_config
from full.data import SetKind, TensorSet
from full.distributed import DistContext, Runner
from full.logs import read_metrics
from full.pipeline import run_training
from full.recipes import final_weights
from full.stages import common, dmd
from full.stages.ode_pairs import teacher_map

CTX = DistContext()
STEPS = 40
QUICK = [
    "logging.progress=false",
    "logging.sample_count=0",
    "model.tiny_base.steps=0",
    "model.tiny_base.videos=16",
    f"ar_diffusion.loop.steps={STEPS}",
    "ode_pairs.max_pairs=16",
    "ode_pairs.num_steps=8",
    f"ode.loop.steps={STEPS}",
    f"cd.loop.steps={STEPS}",
    f"dmd.loop.steps={STEPS}",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny causal-forcing run (ar-diffusion → ode-pairs → ode → dmd), then cd from the same AR teacher."""
    out = tmp_path_factory.mktemp("run")
    config = build_config(preset="tiny", overrides=[f"out={out}", *QUICK])
    run_training(config, ctx=CTX)
    pp = build_config(preset="tiny", recipe="causal-forcing-pp", overrides=[f"out={out}", *QUICK])
    run_training(pp, stage=Stage.CD, ctx=CTX)
    return common.prepare_assets(config, CTX)  # the resolved configuration (data.latents set)


def decrease(path, key: str) -> tuple[float, float]:
    values = [r[key] for r in read_metrics(path) if key in r]
    w = max(1, len(values) // 5)
    return sum(values[:w]) / w, sum(values[-w:]) / w


@pytest.mark.parametrize(
    ("stage", "key"),
    [("ar-diffusion", "teacher_loss"), ("ode", "student_loss"), ("cd", "student_loss"), ("dmd", "critic_loss")],
)
def test_each_stage_loss_decreases(run, stage, key):
    first, last = decrease(f"{run.out}/{stage}/metrics.jsonl", key)
    assert last < 0.8 * first, (stage, first, last)


def test_diffusion_forcing_ablation_trains_too(tmp_path):
    config = build_config(preset="tiny", overrides=[f"out={tmp_path}", *QUICK, "ar_diffusion.forcing=diffusion"])
    run_training(config, stage=Stage.AR_DIFFUSION, ctx=CTX)
    first, last = decrease(tmp_path / "ar-diffusion" / "metrics.jsonl", "teacher_loss")
    assert last < 0.8 * first


def test_pairs_hold_the_trajectory_at_the_student_sigmas(run):
    pairs = TensorSet(f"{run.out}/ode-pairs", SetKind.ODE_PAIRS)
    assert pairs.meta["teacher"] == "ar" and set(pairs.fields) == {"states", "target", "text", "clean"}
    expected = few_step_sigmas(run.model.few_step_timesteps, run.model.shift)
    assert torch.allclose(torch.tensor(pairs.meta["sigmas"], dtype=torch.float64), expected)
    latents = TensorSet(run.data.latents)
    item = pairs.fetch([3])
    assert torch.equal(item["clean"], latents.fetch([3])["latents"])  # the ground-truth context of item 3
    # regenerating item 3 alone (another batch composition) gives the same pair: noise is seeded per item
    model = common.build_model(run, final_weights(run, Stage.AR_DIFFUSION), "AR teacher")
    keep = few_step_sigmas(run.model.few_step_timesteps, run.model.shift)
    text, clean = item["text"], item["clean"]
    traj = teacher_map(Runner(model), run, text, latents.negative[None], clean, keep)(item["states"][:, 0])
    torch.testing.assert_close(traj.states, item["states"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(traj.end, item["target"], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The tiny preset's base model trained bidirectionally on the synthetic set (it moves shapes)."""
    out = tmp_path_factory.mktemp("base")
    config = build_config(preset="tiny", overrides=[f"out={out}", *QUICK[:2], "model.tiny_base.steps=150"])
    return common.prepare_assets(config, CTX)


def test_ar_teacher_pairs_are_injective_bidirectional_pairs_are_not(pretrained):
    """cf_ref's non-injectivity index of the pair maps, on the synthetic set: η = 0 for the AR teacher under
    clean context (the student sees its block's noise + the clean context) and η > 0 for the bidirectional
    model's pairs (the causal student sees the noise of blocks ≤ its own)."""
    config = pretrained
    f, b = config.video.latent_frames, config.model.block_size
    data = TensorSet(config.data.latents)
    batch = data.fetch(range(4))
    x0, text, negative = batch["latents"], batch["text"], data.negative[None].expand(4, -1, -1)
    runner = Runner(common.load_model(common.base_model_dir(config), "base"))
    eta = {}
    for teacher in PairTeacher:
        cfg = dataclasses.replace(config, ode_pairs=dataclasses.replace(config.ode_pairs, teacher=teacher))
        clean = x0 if teacher is PairTeacher.AR else None

        def pair_map(copies, cfg=cfg, clean=clean):
            n, m = copies.shape[:2]

            def rep(t):
                return t[:, None].expand(n, m, *t.shape[1:]).flatten(0, 1)

            ctx_clean = None if clean is None else rep(clean)
            traj = teacher_map(runner, cfg, rep(text), rep(negative), ctx_clean, None)(copies.flatten(0, 1))
            return traj.end.unflatten(0, (n, m))

        vis = teacher_forcing_visibility(f, b)[f:, f:] if teacher is PairTeacher.AR else block_causal_visibility(f, b)
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        eta[teacher] = non_injectivity_index(pair_map, eps, vis, 6, generator=torch.Generator().manual_seed(0))
    assert float(eta[PairTeacher.AR].abs().max()) < 1e-10
    hidden = eta[PairTeacher.BIDIRECTIONAL][: f - b]  # the last block sees every frame's noise
    assert float(hidden.min()) > 1e-4, eta


def test_dmd_generator_update_moves_samples_against_the_dmd_gradient(run):
    """One small SGD step on the generator loss moves the rollout's samples along −g (first order)."""
    config = dataclasses.replace(run, dmd=dataclasses.replace(run.dmd, guidance_scale=3.0))
    generator = Runner(common.build_model(config, final_weights(config, Stage.ODE), "generator"))
    real = Runner(common.load_model(common.base_model_dir(config), "real"))
    critic_model = common.load_model(common.base_model_dir(config), "critic")
    with torch.no_grad():
        for p in critic_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    critic = Runner(critic_model)
    data = TensorSet(config.data.latents)
    batch = data.fetch([0, 1])
    shape = common.latent_shape(config, generator.model)
    b = config.model.block_size

    def sample(grad: bool):
        rnd = common.step_random(config, CTX, "test", 0, 0, "generator")
        with torch.set_grad_enabled(grad):
            return dmd.generator_samples(generator, config, batch, rnd, shape), rnd

    x, rnd = sample(True)
    sigma = dmd.score_sigmas(config, x.shape[0], x.shape[1], rnd, x.device)
    eps = rnd.normal(x.shape, x.device)
    with torch.no_grad():
        x_s = interpolate(x.detach(), eps, sigma)
        neg = data.negative[None].expand(2, -1, -1)
        real_v = common.guided_field(real, batch["text"], neg, 3.0, AttentionMode.BIDIRECTIONAL, b)(x_s, sigma)
        fake_v = common.velocity_field(critic, batch["text"], AttentionMode.BIDIRECTIONAL, b)(x_s, sigma)
        g = dmd_gradient(x.detach(), x0_from_velocity(x_s, real_v, sigma), x0_from_velocity(x_s, fake_v, sigma))
    loss = 0.5 * torch.nn.functional.mse_loss(x, (x - g).detach())
    loss.backward()
    with torch.no_grad():
        for p in generator.parameters():
            if p.grad is not None:
                p.sub_(1e-3 * p.grad)
    x_new, _ = sample(False)
    step = (x_new - x.detach()).flatten()
    assert float(step.norm()) > 0
    cosine = torch.dot(step, g.flatten()) / (step.norm() * g.norm())
    assert float(cosine) < -0.1, float(cosine)
