"""``summary.md``: the experiment's tables in markdown, ready to paste into a paper (from ``metrics.json`` only)."""

from __future__ import annotations

from toy.claims import EXPECTATION, THEOREM, tally


def _fmt(value: float, digits: int = 3) -> str:
    if value == 0:
        return "0"
    if abs(value) < 10 ** (-digits) or abs(value) >= 1e4:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _frames(values: list[float], digits: int = 3) -> str:
    return " / ".join(_fmt(v, digits) for v in values)


def _student_label(key: str, entry: dict) -> str:
    name = "bidirectional-ODE" if entry["pair_teacher"] == "bidirectional" else "causal-ODE"
    return f"{name} student, {entry['num_steps']}-step"


def _injectivity_table(metrics: dict) -> list[str]:
    rows = [
        "| dataset | bidirectional pairs (per frame) | causal pairs (per frame) |",
        "|---|---|---|",
    ]
    for name, exp in metrics["experiments"].items():
        ni = exp["non_injectivity"]
        rows.append(f"| {name} | {_frames(ni['bidirectional'])} | {_frames(ni['ar'])} |")
    return rows


def _regression_table(metrics: dict) -> list[str]:
    n_all, n_ce = metrics["settings"]["num_eval_pairs"], metrics["settings"]["num_ce_pairs"]
    rows = [
        f"| dataset | student | error to flow map ({n_all} pairs) | error to flow map ({n_ce} pairs) | "
        f"error to cond. expectation ({n_ce} pairs) | Monte Carlo error of the cond. expectation |",
        "|---|---|---|---|---|---|",
    ]
    for name, exp in metrics["experiments"].items():
        for key, s in exp["students"].items():
            rows.append(
                f"| {name} | {_student_label(key, s)} | {_frames(s['error_to_flow_map'])} | "
                f"{_frames(s['error_to_flow_map_ce_subset'])} | {_frames(s['error_to_conditional_expectation'])} | "
                f"{_frames(s['conditional_expectation_mc_error'])} |"
            )
    return rows


def _sample_rows(name: str, label: str, entry: dict, mixture: bool) -> str:
    cells = [name, label, _fmt(entry["energy_distance"], 4), _frames(entry["variance_ratio"], 2)]
    if mixture:
        cells += [_fmt(entry["off_manifold_fraction"], 4), _fmt(entry["mode_coverage"], 2)]
    else:
        cells += ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def _sample_table(metrics: dict) -> list[str]:
    rows = [
        "| dataset | generator | energy distance | variance ratio (per frame) | off-manifold | mode coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name, exp in metrics["experiments"].items():
        mixture = exp["config"]["num_components"] > 1
        noise = exp["data"]["energy_distance_noise"]
        data_label = f"fresh data (noise: {_fmt(noise['mean'], 4)} ± {_fmt(noise['std'], 4)})"
        rows.append(_sample_rows(name, data_label, exp["data"], mixture))
        rows.append(_sample_rows(name, "bidirectional teacher", exp["teachers"]["bidirectional"], mixture))
        rows.append(_sample_rows(name, "AR teacher", exp["teachers"]["ar"], mixture))
        for key, s in exp["students"].items():
            label = _student_label(key, s) + f" ({s['context_regime'].replace('_', '-')} context)"
            rows.append(_sample_rows(name, label, s, mixture))
            if "clean_context_rollout" in s:
                rows.append(
                    _sample_rows(name, _student_label(key, s) + " (clean context)", s["clean_context_rollout"], mixture)
                )
    return rows


def _closed_form_table(metrics: dict) -> list[str]:
    rows = [
        "| dataset | quantity | per frame |",
        "|---|---|---|",
    ]
    found = False
    for name, exp in metrics["experiments"].items():
        cf = exp.get("closed_form")
        if cf is None:
            continue
        found = True
        rows.append(f"| {name} | data variance | {_frames(cf['data_variance'])} |")
        rows.append(
            f"| {name} | conditional-expectation variance (closed form) | {_frames(cf['conditional_expectation_variance'])} |"
        )
        for k, values in cf["few_step_sampler_variance"].items():
            rows.append(
                f"| {name} | {k}-step conditional-expectation sampler variance (closed form) | {_frames(values)} |"
            )
        for key, s in exp["students"].items():
            if s["pair_teacher"] == "bidirectional":
                rows.append(f"| {name} | {_student_label(key, s)}: sample variance | {_frames(s['sample_variance'])} |")
    return rows if found else []


def _claims_table(claims: list[dict]) -> list[str]:
    rows = ["| dataset | subject | claim | value | threshold | margin | holds |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        rows.append(
            f"| {c['dataset']} | {c['subject']} | {c['claim']} ({c['statement']}) | {_fmt(c['value'], 4)} | "
            f"{c['relation']} {_fmt(c['threshold'], 4)} | {_fmt(c['margin'], 4)} | {'yes' if c['holds'] else '**no**'} |"
        )
    return rows


def _claims_sections(metrics: dict) -> list[str]:
    """The theorem checks and the empirical expectations, each in its own table (kinds: :mod:`toy.claims`)."""
    claims = metrics["claims"]
    theorems = [c for c in claims if c["kind"] == THEOREM]
    expectations = [c for c in claims if c["kind"] == EXPECTATION]
    return [
        "## Theorem checks",
        "",
        "Exact consequences of docs/theory.md: a failure is a bug, and `cf-ref toy run` exits with status 3.",
        "",
        *_claims_table(theorems),
        "",
        "## Empirical expectations",
        "",
        "A finite student within sampling noise (or the stated tolerance) of its target; margin < 0 = missed by that much.",
        "",
        *_claims_table(expectations),
        "",
    ]


def claims_line(metrics: dict) -> str:
    """``theorem checks a/b hold, expectations c/d hold``."""
    counts = tally(metrics["claims"])
    return (
        f"theorem checks {counts[THEOREM]['held']}/{counts[THEOREM]['total']} hold, "
        f"expectations {counts[EXPECTATION]['held']}/{counts[EXPECTATION]['total']} hold"
    )


def summary_markdown(metrics: dict) -> str:
    """The summary document of a run (see docs/toy.md for what each number means)."""
    settings = metrics["settings"]
    grid = settings["grid"]
    parts = [
        f"# cf-ref toy run — preset `{metrics['preset']}`, seed {metrics['seed']}",
        "",
        f"Teacher PF-ODE: {grid['teacher_steps']} {grid['method'].upper()} steps, shift {grid['shift']}; "
        + "; ".join(f"{k}-step student σ = {_frames(v)}" for k, v in grid["student_sigmas"].items())
        + ". Errors are RMS over samples and dims (pooled over the student's states); "
        "non-injectivity at σ = 1.",
        "",
        f"Claims: {claims_line(metrics)}.",
        "",
        "## Non-injectivity of the ODE pairs",
        "",
        *_injectivity_table(metrics),
        "",
        "## Regression error of the students (held-out pairs; per frame)",
        "",
        *_regression_table(metrics),
        "",
        "## Sample quality of autoregressive rollouts",
        "",
        *_sample_table(metrics),
        "",
    ]
    closed = _closed_form_table(metrics)
    if closed:
        parts += ["## Gaussian closed forms", "", *closed, ""]
    parts += _claims_sections(metrics)
    return "\n".join(parts)
