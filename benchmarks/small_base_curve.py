"""Learning-curve probe of the small track's base model: score weights files on the base check.

Each file (a ``base-pretrain`` checkpoint's ``base.safetensors`` / ``base-ema.safetensors``, or a final
``model.safetensors``) is loaded into the preset's DiT, sampled by the bidirectional PF-ODE (Euler, ``--steps``) on the
first ``--captions`` held-out captions of ``--seed`` with the comparison's fixed noise, and scored with
:mod:`full.small.metrics` against the data's renderings; prints one line per file with the metrics and the failed
items of :data:`full.small.summary.BASE_TOLERANCE`. The pretraining keeps one checkpoint, so copy each as it appears
to score a curve.

    python benchmarks/small_base_curve.py [--preset small] [--captions 16] [--steps 16] FILE...
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from cf_ref.io import load_tensors
from cf_ref.masks import AttentionMode
from cf_ref.solvers import Method, integrate
from full.distributed import Runner
from full.small.evaluate import eval_inputs, eval_scenes, rendered
from full.small.metrics import score_videos
from full.small.settings import get_settings
from full.small.summary import base_check_line
from full.stages.fields import guided_field
from full.synthetic import patch_decode
from full.tiny import tiny_transformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--captions", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = dataclasses.replace(get_settings(args.preset), eval_videos=args.captions)
    scenes = eval_scenes(settings, args.seed)
    ref = score_videos(rendered(settings, scenes), scenes)
    text, negative, noise = eval_inputs(settings, scenes, args.seed)
    for path in args.files:
        model = tiny_transformer(0, settings.model)
        model.load_state_dict(load_tensors(path))
        field = guided_field(Runner(model.eval()), text, negative, 1.0, AttentionMode.BIDIRECTIONAL, 3)
        with torch.no_grad():
            out = integrate(field, noise, torch.linspace(1, 0, args.steps + 1), Method.EULER).end
        s = score_videos(patch_decode(out.float(), settings.data.patch), scenes).summary(ref.features)
        print(f"{path}: {base_check_line(s, ref.summary())}")


if __name__ == "__main__":
    main()
