"""Short base-model probes of the small track: the preset's base pretraining as a plain loop, with knobs.

The same DiT (:func:`full.tiny.tiny_transformer` at the small preset's sizes), data (the preset's ``base.videos``
scenes of seed 0, patch-coded), flow-matching loss (bidirectional, one σ per video, caption dropout), AdamW with
warm-up + cosine decay and gradient clipping as :func:`full.stages.base.pretrain_tiny_base`; knobs for the probes
of ``docs/small.md``: the σ sampler (``--sampler``, ``--shift``), direction-balanced batches (``--balanced``), the
caption code (``--caption-code axis``: ±axis direction vectors, ``small_caption_codes``), the caption length
(``--text-length 5``: no padding tokens), a learning-rate factor for the text path (``--text-lr``), the walls drawn
(``--backdrop walls``), the patch code (``--patch 1``: 8×8 tokens per frame instead of 4×4).
Saves ``base-<step>.safetensors`` at the ``--save`` steps, prints the loss and CPU seconds.

    python experiments/small_base_probe.py --steps 2000 --save 1000,2000 --out runs/probe-a
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from pathlib import Path

import torch
from small_caption_codes import CODES, embed
from small_probe_settings import add_data_arguments, probe_settings

from cf_ref.io import save_tensors
from cf_ref.losses import flow_matching_loss
from cf_ref.masks import AttentionMode
from cf_ref.schedule import interpolate
from full.stages.base import learning_rate, sample_base_sigmas
from full.synthetic import DIRECTIONS, patch_encode
from full.tiny import tiny_transformer


def load_data(settings, count: int, code: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Latents ``[N, F, C, h, w]``, text ``[N, L, D]``, negative ``[L, D]`` and the directions of the base set."""
    d = dataclasses.replace(settings.data, count=count, seed=0)
    scenes = d.scenes()
    lat = torch.stack([patch_encode(d.render(s), d.patch) for s in scenes])
    text = torch.stack([embed(s.caption, d.text_length, d.text_dim, code) for s in scenes])
    return lat, text, embed("", d.text_length, d.text_dim, code), [s.objects[0].direction for s in scenes]


TEXT_PATH = ("condition_embedder.text_embedder.", "attn2.to_k.", "attn2.to_v.", "attn2.norm_k.")


def optimiser(model, lr: float, text_factor: float) -> torch.optim.AdamW:
    """AdamW, no weight decay; the text path (text embedder, cross-attention K / V) at ``text_factor`` × the lr."""
    text = [p for n, p in model.named_parameters() if any(k in n for k in TEXT_PATH)]
    rest = [p for n, p in model.named_parameters() if not any(k in n for k in TEXT_PATH)]
    groups = [{"params": rest, "factor": 1.0}, {"params": text, "factor": text_factor}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)


def batches(directions: list[str], batch: int, balanced: bool, g: torch.Generator):
    """Index batches: uniform, or ``batch / 4`` videos of each direction."""
    by_dir = {k: torch.tensor([i for i, d in enumerate(directions) if d == k]) for k in DIRECTIONS}
    while True:
        if not balanced:
            yield torch.randint(0, len(directions), (batch,), generator=g)
        else:
            parts = [v[torch.randint(0, len(v), (batch // 4,), generator=g)] for v in by_dir.values()]
            yield torch.cat(parts)


def draw_sigmas(n: int, frames: int, a, g: torch.Generator) -> torch.Tensor:
    """``[n, frames]``: one σ per video, or with probability ``a.block_noise`` one σ per block of ``a.noise_block``
    frames (1: per frame, as in diffusion forcing)."""
    b = a.noise_block
    sigma = sample_base_sigmas(n, a.sampler, a.shift, g)[:, None].expand(-1, frames)
    blocks = sample_base_sigmas(n * frames // b, a.sampler, a.shift, g).reshape(n, frames // b)
    per_block = blocks.repeat_interleave(b, dim=1)
    pick = torch.rand(n, generator=g, dtype=torch.float64) < a.block_noise
    return torch.where(pick[:, None], per_block, sigma).float()


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--save", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--sampler", default="uniform")
    p.add_argument("--shift", type=float, default=1.0)
    p.add_argument("--balanced", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--noise-block", type=int, default=3, help="frames per σ of --block-noise videos")
    p.add_argument("--block-noise", type=float, default=0.0, help="fraction of videos with one σ per block")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--videos", type=int, default=4096)
    p.add_argument("--caption-code", default="words", choices=CODES)
    p.add_argument("--text-lr", type=float, default=1.0, help="lr factor of the text path")
    add_data_arguments(p)
    return p.parse_args()


def main() -> None:
    a = arguments()
    torch.set_num_threads(1)
    settings = probe_settings(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lat, text, negative, dirs = load_data(settings, a.videos, a.caption_code)
    model = tiny_transformer(0, settings.model).train()
    opt = optimiser(model, a.lr, a.text_lr)
    g = torch.Generator().manual_seed(1)
    feed = batches(dirs, a.batch, a.balanced, g)
    save = {int(s) for s in a.save.split(",") if s}
    t0, losses = time.time(), []
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = group["factor"] * learning_rate(step, a.steps, a.lr, 200, True)
        idx = next(feed)
        x0, c = lat[idx], text[idx].clone()
        drop = torch.rand(len(idx), generator=g) < a.dropout
        c[drop] = negative
        sigma = draw_sigmas(len(idx), x0.shape[1], a, g)
        eps = torch.randn(x0.shape, generator=g)
        v = model.velocity(interpolate(x0, eps, sigma), sigma, c, mode=AttentionMode.BIDIRECTIONAL, block_size=3)
        loss = flow_matching_loss(v, x0, eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 250 == 0:
            cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            print(
                f"step {step + 1} loss {sum(losses[-250:]) / 250:.4f} wall {time.time() - t0:.0f}s cpu {cpu:.0f}s",
                flush=True,
            )
        if step + 1 in save:
            save_tensors(out / f"base-{step + 1}.safetensors", {k: v.detach() for k, v in model.state_dict().items()})


if __name__ == "__main__":
    main()
