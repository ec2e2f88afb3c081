r"""The two open questions of docs/toy.md §8, each answered by a controlled experiment on the pipeline's stages.

``init-quality`` — *why does DMD add nothing after a good causal initialisation?* One seed, the quick budget:
the base model and the teacher-forcing AR teacher are trained once; the causal-ODE student is then trained for
fewer steps on purpose (``--init-steps``, e.g. 1000 = the preset, 300, 100, 30), and each of those
initialisations goes through the same DMD. Also recorded: the energy distance between the initialisation's
samples and the real score's own samples (the base model's joint PF-ODE), i.e. how far the student is from the
distribution DMD pulls it to.

``drift`` — *what drives Causal Forcing++'s drift under DMD?* One seed, the paper budget or (``--preset quick``)
the quick one (``--dmd-steps`` generator steps, default the preset's; at the paper budget the drift appears in
the first 100, docs/toy.md §8): the same CD-initialised generator under
DMD variants that each change one thing — ``baseline``; ``exact-real-score`` (real-score guidance from the
exact teacher, not the learned base model); ``low-lr`` (generator learning rate ÷ 4); ``critic-warmup`` (the
critic first trained on the initial generator's samples for ``--warmup`` steps, so the first DMD gradients come
from a critic that matches the generator); ``ode-init`` (the causal-ODE initialisation under the baseline DMD,
the control); ``cd-polished`` (the CD student further trained by ODE regression on the 4 sampling levels,
removing what CD learnt off the sampling grid).

Usage::

    python experiments/toy_dmd_questions.py init-quality --out runs/dmd_init [--seed 0]
    python experiments/toy_dmd_questions.py drift --out runs/dmd_drift [--variants baseline,...]
    python experiments/toy_dmd_questions.py plot --results runs/dmd_init --figures docs/figures/toy_dmd

Each writes ``<out>/<question>.json`` after every variant (so a partial run keeps what it finished) and the
figure ``<out>/<question>.png``. Prints CPU and wall seconds per variant.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from cf_ref.recipes import RECIPES, Forcing, Init, Recipe
from toy.evaluation import SampleSizes, sample_quality
from toy.pipeline import SeedRun, stage_rng
from toy.pipeline_config import PipelineConfig, RealScore, pipeline_config
from toy.preset import Preset
from toy.stages import _Critic, distill_ode, generator_samples, ode_pairs, sample_data

SHARED = ("base", "ar_teacher/teacher_forcing", "init/causal_cd")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _fork(run: SeedRun, config: PipelineConfig) -> SeedRun:
    """A SeedRun with another config that reuses ``run``'s trained base model and AR teacher (same seed)."""
    other = SeedRun(config, run.seed)
    _share(run, other)
    return other


def _share(source: SeedRun, target: SeedRun, keys=SHARED) -> None:
    """Hand ``source``'s finished stages among ``keys`` to ``target`` (networks, records, samples)."""
    for key in keys:
        if key in source._nets and key not in target._nets:
            target._nets[key], target.records[key] = source._nets[key], source.records[key]
            target.samples[key] = source.samples[key]


def _record(run: SeedRun, recipe: Recipe, real_samples: torch.Tensor) -> dict:
    """init / final metrics, the DMD curve, and the initialisation's distance to the real score's samples."""
    init_key, dmd_key = f"init/{RECIPES[recipe].init.value}", f"dmd/{recipe.value}"
    n = len(real_samples)
    to_real = sample_quality(run.samples[init_key], real_samples, run.data, SampleSizes(variance=n, energy=n))
    return {
        "init_tails": _tails(run.samples[init_key], run.samples["data"]),
        "final_tails": _tails(run.samples[dmd_key], run.samples["data"]),
        "init": run.records[init_key]["samples"],
        "final": run.records[dmd_key]["samples"],
        "curve": run.records[dmd_key]["curve"],
        "init_to_real_score_energy_distance": to_real["energy_distance"],
        "real_score_to_data": run.records["base"]["samples"],
        "noise_floor": run.noise_floor(),
    }


def _tails(samples: torch.Tensor, data: torch.Tensor) -> dict:
    """Rare far samples, which the energy distance weighs by their distance: the largest frame norm, the fraction of
    samples with a frame farther from the origin than any of the ``data`` frames, and the 99.9 % quantile."""
    norms, reach = samples.double().norm(dim=-1).amax(dim=-1), data.double().norm(dim=-1).amax()
    return {
        "max_frame_norm": float(norms.max()),
        "data_max_frame_norm": float(reach),
        "beyond_data_fraction": float((norms > reach).double().mean()),
        "frame_norm_q999": float(norms.quantile(0.999)),
    }


def init_quality(args) -> dict:
    config = pipeline_config(Preset.QUICK, RealScore(args.real_score))
    root = SeedRun(config, args.seed)
    root.ar_teacher(Forcing.TEACHER)
    real = root.samples["base"]
    name = "init-quality" if args.real_score == RealScore.LEARNED.value else f"init-quality-{args.real_score}"
    out = {"question": name, "seed": args.seed, "preset": "quick", "real_score": args.real_score, "variants": {}}
    for steps in args.init_steps:
        cpu, wall = _cpu(), time.perf_counter()
        run = SeedRun(replace(config, budget=replace(config.budget, init_steps=steps)), args.seed)
        _share(root, run, SHARED[:2])
        run.run(Recipe.CAUSAL_FORCING)
        out["variants"][str(steps)] = {**_record(run, Recipe.CAUSAL_FORCING, real), "init_steps": steps,
                                       "cpu_s": _cpu() - cpu, "wall_s": time.perf_counter() - wall}  # fmt: skip
        _write(args.out, name, out)
        print(f"init steps {steps}: {_line(out['variants'][str(steps)])}", flush=True)
    return out


def _warm_critic(run: SeedRun, generator, critic, steps: int, rng: torch.Generator) -> None:
    """Train the critic alone on the initial generator's samples (the fake score of the initialisation)."""
    settings = run.dmd_settings(RECIPES[Recipe.CAUSAL_FORCING_PP])
    s = replace(settings, critic_optim=replace(settings.critic_optim, steps=steps), critic_updates_per_generator=1)
    fake = _Critic(critic, s.critic_optim, [])
    draw = lambda: generator_samples(generator, s.batch_size, run.data, s.student_sigmas, s.generator_input, rng)  # noqa: E731
    for _ in range(steps):
        fake.update(draw, s, run.data.num_frames, rng)


def _polish(run: SeedRun, net, steps: int) -> None:
    """ODE regression of ``net`` on the 4 sampling levels (pairs of the teacher-forcing AR teacher)."""
    b, rng = run.config.budget, stage_rng(run.seed, "polish")
    teacher = run.ar_teacher(Forcing.TEACHER)
    n, f, d = b.num_pairs, run.data.num_frames, run.data.dim
    context, eps = sample_data(run.data, n, rng), torch.randn(n, f, d, generator=rng)
    pairs = ode_pairs(teacher, eps, run.grid, run.student_sigmas, context=context)
    distill_ode(net, pairs, b.optim(steps), b.batch_size, rng, RECIPES[Recipe.CAUSAL_FORCING].state_granularity)


def drift(args) -> dict:
    preset = pipeline_config(Preset(args.preset))
    steps = args.dmd_steps or preset.budget.dmd_steps
    config = replace(preset, budget=replace(preset.budget, dmd_steps=steps), dmd=replace(preset.dmd, eval_every=50))
    root = SeedRun(config, args.seed)
    root.base()
    real = root.samples["base"]
    out = {
        "question": f"drift-{args.preset}",
        "seed": args.seed,
        "preset": args.preset,
        "dmd_steps": steps,
        "variants": {},
    }
    for variant in args.variants:
        cpu, wall = _cpu(), time.perf_counter()
        recipe, cfg = Recipe.CAUSAL_FORCING_PP, config
        if variant == "exact-real-score":
            cfg = replace(config, dmd=replace(config.dmd, real_score=RealScore.EXACT))
        elif variant == "low-lr":
            cfg = replace(config, budget=replace(config.budget, generator_lr=config.budget.generator_lr / 4))
        elif variant == "ode-init":
            recipe = Recipe.CAUSAL_FORCING
        run = _fork(root, cfg)
        if variant in ("critic-warmup", "cd-polished"):
            _patched_dmd(run, variant, args)
        run.run(recipe)
        out["variants"][variant] = {**_record(run, recipe, real), "cpu_s": _cpu() - cpu,
                                    "wall_s": time.perf_counter() - wall}  # fmt: skip
        _write(args.out, out["question"], out)
        print(f"{variant}: {_line(out['variants'][variant])}", flush=True)
        if variant != "cd-polished":
            _share(run, root)  # the teacher and the CD initialisation, for the next variants
    return out


def _patched_dmd(run: SeedRun, variant: str, args) -> None:
    """``cd-polished``: DMD starts from a polished copy of the CD student. ``critic-warmup``: the critic DMD copies
    from the base model is first trained on the initial generator's samples (the real score stays the base model)."""
    original_init, original_base = run.init, run.base
    key = f"init/{Init.CAUSAL_CD.value}"

    def init(spec):
        net = original_init(spec)
        if variant == "cd-polished" and not getattr(net, "polished", False):
            net = copy.deepcopy(net)
            _polish(run, net, args.polish_steps)
            net.polished = True
            run._nets[key] = net
            run.records[key] = {**run.records[key], "samples": run._few_step_metrics(key, net)}
        return net

    run.init = init
    if variant == "critic-warmup":
        warmed = {}

        def base():
            net = original_base()
            if sys._getframe(1).f_code.co_name != "dmd":  # DMD's first call copies the critic; real_score() is another
                return net
            if "critic" not in warmed:
                critic, gen = copy.deepcopy(net), copy.deepcopy(run.init(RECIPES[Recipe.CAUSAL_FORCING_PP]))
                _warm_critic(run, gen, critic, args.warmup, stage_rng(run.seed, "warmup"))
                warmed["critic"] = critic
            return warmed["critic"]

        run.base = base


def _line(v: dict) -> str:
    i, f = v["init"], v["final"]
    return (f"energy distance {i['energy_distance']:.4f} -> {f['energy_distance']:.4f}, off-manifold "
            f"{i['off_manifold_fraction']:.3f} -> {f['off_manifold_fraction']:.3f}, init-to-real-score "
            f"{v['init_to_real_score_energy_distance']:.4f}, max frame norm {v['init_tails']['max_frame_norm']:.2f} -> "
            f"{v['final_tails']['max_frame_norm']:.2f} (data {v['final_tails']['data_max_frame_norm']:.2f}); cpu {v['cpu_s']:.0f} s, wall {v['wall_s']:.0f} s")  # fmt: skip


def _write(out: Path, name: str, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / f"{name}.json")


def plot(args) -> None:
    """Figures of finished runs: the DMD curves of every variant (energy distance, off-manifold fraction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for path in sorted(args.results.glob("*.json")):
        doc = json.loads(path.read_text())
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for label, v in doc["variants"].items():
            steps = [p["step"] for p in v["curve"]]
            name = f"{label} init steps" if doc["question"].startswith("init-quality") else label
            for ax, metric in zip(axes, ("energy_distance", "off_manifold_fraction")):
                ax.plot(steps, [p[metric] for p in v["curve"]], marker="o", ms=3, label=name)
        floor = next(iter(doc["variants"].values()))["noise_floor"]
        axes[0].axhspan(min(floor["draws"]), max(floor["draws"]), color="grey", alpha=0.2, label="fresh data")
        base = next(iter(doc["variants"].values()))["real_score_to_data"]
        if doc.get("real_score", "learned") == "learned":
            axes[0].axhline(base["energy_distance"], color="k", ls="--", lw=1, label="real score's own samples")
            axes[1].axhline(base["off_manifold_fraction"], color="k", ls="--", lw=1)
        axes[0].set_yscale("symlog", linthresh=1e-3)
        for ax, title in zip(axes, ("energy distance to data", "off-manifold fraction")):
            ax.set_xlabel("DMD generator step")
            ax.set_title(title)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{doc['question']} (seed {doc['seed']}, {doc['preset']} budget)")
        fig.tight_layout()
        args.figures.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figures / f"{path.stem}.png", dpi=110)
        plt.close(fig)
        print(f"wrote {args.figures / (path.stem + '.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="question", required=True)
    a = sub.add_parser("init-quality")
    a.add_argument("--init-steps", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 300, 100, 30])
    a.add_argument("--real-score", choices=[r.value for r in RealScore], default=RealScore.LEARNED.value)
    b = sub.add_parser("drift")
    b.add_argument("--variants", type=lambda s: s.split(","),
                   default=["baseline", "critic-warmup", "exact-real-score", "low-lr", "cd-polished", "ode-init"])  # fmt: skip
    b.add_argument("--preset", choices=[p.value for p in Preset], default=Preset.PAPER.value)
    b.add_argument("--dmd-steps", type=int, default=0, help="generator steps (0: the preset's)")
    b.add_argument("--warmup", type=int, default=1000)
    b.add_argument("--polish-steps", type=int, default=1000)
    c = sub.add_parser("plot")
    c.add_argument("--results", type=Path, required=True, help="folder with the JSON files of earlier runs")
    c.add_argument("--figures", type=Path, required=True)
    for p in (a, b):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.question == "plot":
        return plot(args)
    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    (init_quality if args.question == "init-quality" else drift)(args)


if __name__ == "__main__":
    main()
