"""What the four fidelity options change: the gradients of the tiny DiT with cf-ref's default and with the
authors' behaviour, relative L2 difference ``‖g_authors - g_default‖ / ‖g_default‖`` over all weights.

* ``dmd.cache_gradient`` (none → published-leak): the DMD generator loss's gradient, one self-forcing rollout of
  21 latent frames in blocks of 3, every shared exit step 0…3, ``--seeds`` prompts/noises each;
* ``dmd.score_shift`` (null → 8): the same generator gradient, and the critic loss's gradient;
* ``cd.time_dtype`` (float32 → bfloat16): the CD student's gradient at grid indices 0, 4, 20, 46 (N = 48);
* ``cd.ema_first_update`` (copy → blend): the initial weights' share of the target after k updates, 0.99^k
  (closed form, printed).

    python benchmarks/full_fidelity_options.py                       # random tiny weights (seconds)
    python benchmarks/full_fidelity_options.py --run runs/tiny       # a finished `cf-ref full train --preset tiny`

With ``--run`` the DMD generator is the run's ODE student, the critic and real score its base model, and the CD
student, target and teacher its AR teacher; otherwise all are ``full.tiny.tiny_transformer`` with random weights.
The real score uses CFG w = 4 against a random negative prompt, the CD teacher w = 3, as the published setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from cf_ref.distill.cd import consistency_distillation_loss
from cf_ref.distill.dmd import critic_loss, dmd_generator_loss, self_rollout_samples
from cf_ref.io import write_json
from cf_ref.machine import machine_info
from cf_ref.masks import AttentionMode
from cf_ref.rollout import CacheGradient
from full.checkpoint import load_weights
from full.config import RunConfig, TimeDtype
from full.distributed import DistContext, Runner
from full.model import CausalWanTransformer3DModel
from full.stages import cd, dmd
from full.stages.fields import guided_field, kv_blockwise, velocity_field
from full.stages.randomness import step_random
from full.tiny import TINY, tiny_transformer

FRAMES, BLOCK, SIZE = 21, 3, 8
CTX = DistContext()


def models(run: Path | None) -> dict[str, CausalWanTransformer3DModel]:
    """generator, critic, real (DMD) and ar (CD student = target = teacher)."""

    def load(weights: str | None, seed: int) -> CausalWanTransformer3DModel:
        if run is None:
            return tiny_transformer(seed=seed)
        m = CausalWanTransformer3DModel.from_pretrained(run / "base-model")
        if weights is not None:
            load_weights(m, run / weights / "final" / "model.safetensors", what=weights)
        return m

    return {"generator": load("ode", 0), "critic": load(None, 1), "real": load(None, 2), "ar": load("ar-diffusion", 3)}


def config(**dmd_changes) -> RunConfig:
    c = RunConfig()
    video = dataclasses.replace(c.video, latent_frames=FRAMES, latent_height=SIZE, latent_width=SIZE)
    model = dataclasses.replace(c.model, block_size=BLOCK)
    return dataclasses.replace(c, video=video, model=model, dmd=dataclasses.replace(c.dmd, **dmd_changes))


def grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def prompt(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(1, TINY.text_length, TINY.text_dim, generator=g)
    return text, torch.randn(text.shape, generator=g)


def dmd_gradients(m, cfg: RunConfig, seed: int, exit_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator gradient, critic gradient) of one DMD step, every block exiting at ``exit_step``: the stage's
    rollout (:func:`full.stages.fields.kv_blockwise` with ``dmd.cache_gradient``), score fields and losses."""
    gen, critic, real = (Runner(m[k]) for k in ("generator", "critic", "real"))
    text, negative = prompt(seed)
    rnd = step_random(cfg, CTX, "fidelity", seed, 0, "generator")
    noise = rnd.normal((1, FRAMES, m["generator"].config.in_channels, SIZE, SIZE), torch.device("cpu"))
    sigmas = cfg.schedule.student_sigmas(torch.float32)

    def rollout(model):
        bw = kv_blockwise(model, text, BLOCK, cfg.dmd.cache_gradient)
        exits = [exit_step] * (FRAMES // BLOCK)
        return self_rollout_samples(bw, noise, BLOCK, sigmas, bw.new_cache(), exits, cfg.dmd.context_noise, rnd.device)

    m["generator"].zero_grad()
    x = gen(rollout)
    sigma = dmd.score_sigmas(cfg, 1, FRAMES, rnd, x.device)
    eps = rnd.normal(x.shape, x.device)
    real_f = dmd.real_score_field(real, cfg, text, negative)
    loss, _ = dmd_generator_loss(x, real_f, dmd.fake_score_field(critic, cfg, text), sigma, eps)
    loss.backward()
    m["critic"].zero_grad()
    critic_loss(dmd.fake_score_field(critic, cfg, text), x.detach(), sigma, eps).backward()
    return grads(m["generator"]), grads(m["critic"])


def cd_gradient(m, time_dtype: TimeDtype, seed: int, n: int) -> torch.Tensor:
    cfg = config()
    cfg = dataclasses.replace(cfg, cd=dataclasses.replace(cfg.cd, time_dtype=time_dtype))
    ar = Runner(m["ar"])
    text, negative = prompt(seed)
    g = torch.Generator().manual_seed(100 + seed)
    x0 = torch.randn(1, FRAMES, m["ar"].config.in_channels, SIZE, SIZE, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    tf = AttentionMode.TEACHER_FORCING
    student = velocity_field(ar, text, tf, BLOCK, x0)
    teacher = guided_field(ar, text, negative, cfg.cd.guidance_scale, tf, BLOCK, x0)
    grid = cfg.schedule.grid(torch.float32)
    index = torch.full((1, FRAMES), n)
    m["ar"].zero_grad()
    target = velocity_field(ar, text, tf, BLOCK, x0)
    consistency_distillation_loss(student, target, teacher, x0, eps, grid, index, times=cd.cd_times(cfg)).backward()
    return grads(m["ar"])


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="a finished `cf-ref full train --preset tiny` folder")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    m = models(args.run)
    leak, shift_gen, shift_critic = [], [], []
    for seed in range(args.seeds):
        for e in range(4):
            base_gen, base_critic = dmd_gradients(m, config(), seed, e)
            leak.append(
                relative(dmd_gradients(m, config(cache_gradient=CacheGradient.PUBLISHED_LEAK), seed, e)[0], base_gen)
            )
            g8, c8 = dmd_gradients(m, config(score_shift=8.0), seed, e)
            shift_gen.append(relative(g8, base_gen))
            shift_critic.append(relative(c8, base_critic))
    cd_rel = {}
    for n in (0, 4, 20, 46):
        cd_rel[n] = summary(
            [
                relative(cd_gradient(m, TimeDtype.BFLOAT16, s, n), cd_gradient(m, TimeDtype.FLOAT32, s, n))
                for s in range(args.seeds)
            ]
        )
    results = {
        "models": "random tiny" if args.run is None else f"tiny run {args.run}",
        "dmd_cache_gradient_generator": summary(leak),
        "dmd_score_shift_8_generator": summary(shift_gen),
        "dmd_score_shift_8_critic": summary(shift_critic),
        "cd_time_dtype_bfloat16_student_by_n": cd_rel,
        "cd_ema_blend_initial_share": {k: 0.99**k for k in (1, 100, 300, 3000)},
    }
    for key, value in results.items():
        print(f"{key}: {value}")
    if args.json:
        write_json(args.json, {"machine": machine_info(), "seeds": args.seeds, "results": results})


if __name__ == "__main__":
    main()
