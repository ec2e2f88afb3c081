"""Why does the small track's base model ignore the direction word? Three probes on one weights file.

* ``guidance``: the base check's metrics when sampling with classifier-free guidance ``w`` (bidirectional PF-ODE,
  Euler, the comparison's fixed noise on the first ``--captions`` held-out captions of seed 0);
* ``swap``: the same noise sampled under the caption with each of the 4 direction words (colour and shape kept):
  how often the sample moves in the captioned direction (and how many samples the metric counts as following no
  direction word — colour found in < ½ the frames, or fitted speed below ``MIN_SPEED`` — and the rate among the
  others), and how much
  the latents change (RMS) when only the direction word changes against changing the colour word instead;
* ``loss``: the conditional flow-matching loss on the held-out videos at fixed σ and fixed noise with the right
  caption, with a wrong direction word, a wrong colour word and the empty caption (paired: the same x_σ), as
  differences to the right caption's loss. If a wrong direction word costs nothing, the model has not learned it.

    python experiments/small_direction_probe.py FILE [--captions 32] [--guidance 1,1.5,2,3]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from einops import rearrange
from small_caption_codes import CODES
from small_caption_codes import embed as embed_caption_code
from small_probe_settings import add_data_arguments, probe_settings

from cf_ref.io import load_tensors
from cf_ref.losses import flow_matching_loss
from cf_ref.masks import AttentionMode
from cf_ref.schedule import interpolate
from cf_ref.seeding import generator
from cf_ref.solvers import Method, integrate
from full.distributed import Runner
from full.small.evaluate import eval_inputs, eval_scenes, rendered
from full.small.metrics import FEATURES, MIN_SPEED, score_videos
from full.small.summary import base_check_line
from full.stages.fields import guided_field
from full.synthetic import COLOURS, DIRECTIONS, SHAPES, Scene, patch_decode, patch_encode
from full.tiny import tiny_transformer

MODE = AttentionMode.BIDIRECTIONAL


def sample(model, text, negative, noise, w: float, steps: int = 16):
    field = guided_field(Runner(model), text, negative, w, MODE, 3)
    with torch.no_grad():
        return integrate(field, noise, torch.linspace(1, 0, steps + 1), Method.EULER).end


def variant(scene: Scene, **change) -> Scene:
    return Scene(tuple(dataclasses.replace(o, **change) for o in scene.objects))


CODE = {"code": "words"}  # the caption code the weights were trained on (--caption-code)


def embed(settings, scenes):
    d = settings.data
    return torch.stack([embed_caption_code(s.caption, d.text_length, d.text_dim, CODE["code"]) for s in scenes])


def guidance_probe(model, settings, scenes, scales):
    ref = score_videos(rendered(settings, scenes), scenes)
    text, negative, noise = eval_inputs(settings, scenes, 0)
    for w in scales:
        out = sample(model, text, negative, noise, w)
        s = score_videos(patch_decode(out.float(), settings.data.patch), scenes).summary(ref.features)
        print(f"  w={w}: {base_check_line(s, ref.summary())}", flush=True)


def swap_probe(model, settings, scenes, w: float):
    _, negative, noise = eval_inputs(settings, scenes, 0)
    outs, follow, absent, static, moving_follow = [], [], [], [], []
    for d in DIRECTIONS:
        vs = [variant(s, direction=d) for s in scenes]
        out = sample(model, embed(settings, vs), negative, noise, w)
        sc = score_videos(patch_decode(out.float(), settings.data.patch), vs)
        outs.append(out)
        follow.append(sc.summary()["follows_direction"])
        # the metric follows no word when the colour is found in < ½ the frames, or the fitted speed < MIN_SPEED
        present = torch.tensor([f["colour"] for f in sc.follows])
        moves = present & (sc.features[:, FEATURES.index("abs_velocity")] >= MIN_SPEED)
        absent.append(1 - float(present.double().mean()))
        static.append(float((present & ~moves).double().mean()))
        moving_follow.append(sum(f["direction"] for f, m in zip(sc.follows, moves) if m) / max(1, int(moves.sum())))
    other = [variant(s, colour=COLOURS[(COLOURS.index(s.objects[0].colour) + 1) % 4]) for s in scenes]
    col = sample(model, embed(settings, other), negative, noise, w)
    d_dir = torch.stack([(outs[i] - outs[j]).pow(2).mean().sqrt() for i in range(4) for j in range(i + 1, 4)]).mean()
    d_col = (col - outs[0]).pow(2).mean().sqrt()
    print(
        f"  swap w={w}: direction followed per word {[round(f, 2) for f in follow]} (mean {sum(follow) / 4:.2f}); "
        f"RMS change direction word {float(d_dir):.3f} vs colour word {float(d_col):.3f}; colour absent {sum(absent) / 4:.2f}, "
        f"static (fitted speed < {MIN_SPEED} px / frame) {sum(static) / 4:.2f}, followed among the others "
        f"{sum(moving_follow) / 4:.2f}",
        flush=True,
    )


def loss_at(model, xs, sig, text, x0, eps) -> float:
    with torch.no_grad():
        return float(flow_matching_loss(model.velocity(xs, sig, text, mode=MODE, block_size=3), x0, eps))


def loss_probe(model, settings, scenes, sigmas, draws: int = 4, first: float | None = None, clean: int = 3):
    x0 = patch_encode(rendered(settings, scenes), settings.data.patch)
    dirs = list(DIRECTIONS)
    texts = {
        "right": [embed(settings, scenes)],
        "dir": [
            embed(settings, [variant(s, direction=dirs[(dirs.index(s.objects[0].direction) + k) % 4]) for s in scenes])
            for k in (1, 2, 3)
        ],
        "shape": [embed(settings, [variant(s, shape=SHAPES[1 - SHAPES.index(s.objects[0].shape)]) for s in scenes])],
        "col": [
            embed(settings, [variant(s, colour=COLOURS[(COLOURS.index(s.objects[0].colour) + 1) % 4]) for s in scenes])
        ],
    }
    texts["empty"] = [
        embed_caption_code("", settings.data.text_length, settings.data.text_dim)[None].expand_as(texts["right"][0])
    ]
    g = generator("cpu", 0, "direction-loss-probe")
    print("  sigma: loss(right) | +wrong direction (mean of 3) | +wrong shape | +wrong colour | +empty", flush=True)
    for s in sigmas:
        acc = dict.fromkeys(texts, 0.0)
        for _ in range(draws):
            eps = torch.randn(x0.shape, generator=g)
            sig = torch.full(x0.shape[:2], s)
            if first is not None:  # forecast: the first block nearly clean, the rest at s
                sig[:, :clean] = first
            xs = interpolate(x0, eps, sig)
            for key, options in texts.items():
                acc[key] += sum(loss_at(model, xs, sig, t, x0, eps) for t in options) / len(options) / draws
        r = acc["right"]
        gaps = " | ".join(f"{acc[k] - r:+.1e}" for k in ("dir", "shape", "col", "empty"))
        print(f"  {s:.2f}: {r:.4f} | {gaps}", flush=True)


def attention_probe(model, settings, scenes, sigmas=(0.5, 0.9)):
    """Each layer's cross-attention weight on each text token (mean over videos, frames and positions) per head, and
    the tokens' value norms, on the held-out videos at fixed σ (the comparison's noise)."""
    caught = []
    hooks = [
        b.attn2.register_forward_pre_hook(lambda m, a, k: caught.append((a, k)), with_kwargs=True) for b in model.blocks
    ]
    text, _, noise = eval_inputs(settings, scenes, 0)
    x0 = patch_encode(rendered(settings, scenes), settings.data.patch)
    for s in sigmas:
        caught.clear()
        with torch.no_grad():
            model.velocity((1 - s) * x0 + s * noise, torch.full(x0.shape[:2], s), text, mode=MODE, block_size=3)
        for layer, (args, kwargs) in enumerate(caught):
            a = model.blocks[layer].attn2
            h, enc = args[0], kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None).hidden
            with torch.no_grad():
                q = a.norm_q(a.to_q(h))
                enc = enc.repeat_interleave(q.shape[0] // enc.shape[0], 0)  # the batch folded per frame
                k, v = a.norm_k(a.to_k(enc)), a.to_v(enc)
                q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=a.heads) for t in (q, k, v))
                w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1).mean((0, 2))
                norms = v.norm(dim=-1).mean((0,))
            print(f"  sigma {s} layer {layer}: attention per token (words of the caption, then padding) | value norm")
            for row, vn in zip(w, norms):
                print("   ", [round(float(x), 3) for x in row], "|", [round(float(x), 1) for x in vn], flush=True)
    for h in hooks:
        h.remove()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--captions", type=int, default=32)
    p.add_argument("--guidance", default="1,1.5,2,3")
    p.add_argument("--probes", default="guidance,swap,loss")
    p.add_argument("--swap-guidance", default="1")
    p.add_argument("--caption-code", default="words", choices=CODES, help="the caption code of the weights")
    add_data_arguments(p)  # the data and model the weights were trained on
    a = p.parse_args()
    CODE["code"] = a.caption_code
    if a.caption_code != "words" and {"guidance", "attention"} & set(a.probes.split(",")):
        p.error("the guidance and attention probes embed the shipped word vectors: use --caption-code words")
    torch.set_num_threads(1)
    settings = probe_settings(a, eval_videos=a.captions)
    scenes = eval_scenes(settings, 0)
    probes = a.probes.split(",")
    for path in a.files:
        model = tiny_transformer(0, settings.model)
        model.load_state_dict(load_tensors(path))
        model.eval()
        print(path, flush=True)
        if "guidance" in probes:
            guidance_probe(model, settings, scenes, [float(w) for w in a.guidance.split(",")])
        if "swap" in probes:
            for w in a.swap_guidance.split(","):
                swap_probe(model, settings, scenes, float(w))
        if "loss" in probes:
            loss_probe(model, settings, scenes, [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0])
        if "attention" in probes:
            attention_probe(model, settings, scenes)
        if "forecast" in probes:
            print("  forecast: first block at sigma 0.1", flush=True)
            loss_probe(model, settings, scenes, [0.5, 0.8, 0.95], first=0.1)
        if "forecast1" in probes:
            print("  forecast: first frame at sigma 0.1", flush=True)
            loss_probe(model, settings, scenes, [0.5, 0.8, 0.95], first=0.1, clean=1)


if __name__ == "__main__":
    main()
