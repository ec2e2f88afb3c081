r"""The experiment's claims, checked against its own metrics (the targets of docs/toy.md).

Each claim is a dict ``{"dataset", "subject", "claim", "value", "threshold", "holds"}``; ``value`` and
``threshold`` are what was compared, so a reader sees the margin, not only a verdict. Sampling noise:

* energy distance: an exact sampler's energy distance to the reference set is a draw from the distribution of
  the fresh-data draws ``data.energy_distance_noise.draws`` (same reference, same sizes; skewed, so quantiles,
  not a standard deviation). "Within sampling noise" = at most the largest of the N draws (an exact sampler
  passes with probability N/(N+1)); "clearly lower" = lower by more than their full range;
* a fraction p from n samples: binomial, three standard deviations of a difference of two estimates,
  :math:`3\sqrt{2\bar p(1-\bar p)/n}` with :math:`\bar p \ge 1/n`.
"""

from __future__ import annotations

import math

CAUSAL_INJECTIVITY_MAX = 1e-3
BIDIRECTIONAL_INJECTIVITY_MIN = 0.05
CE_TO_FLOW_MAP_RATIO_MAX = 1 / 3
VARIANCE_TOLERANCE = 0.05
CAUSAL_ERROR_FRACTION_OF_STD = 0.05
NOISE_SIGMAS = 3.0


def _claim(dataset: str, subject: str, claim: str, value, threshold, holds: bool) -> dict:
    return {
        "dataset": dataset,
        "subject": subject,
        "claim": claim,
        "value": value,
        "threshold": threshold,
        "holds": bool(holds),
    }


def _fraction_tolerance(p: float, q: float, n: int) -> float:
    mean = max(0.5 * (p + q), 1.0 / n)
    return NOISE_SIGMAS * math.sqrt(2 * mean * (1 - mean) / n)


def _frames_dependent(config: dict) -> bool:
    return bool(config.get("frames_dependent", True))


def _injectivity_claims(name: str, exp: dict) -> list[dict]:
    ni = exp["non_injectivity"]
    out = [
        _claim(
            name,
            "causal pairs",
            "frame-level injective: non-injectivity < 1e-3 on every frame",
            max(ni["ar"]),
            CAUSAL_INJECTIVITY_MAX,
            max(ni["ar"]) < CAUSAL_INJECTIVITY_MAX,
        )
    ]
    if _frames_dependent(exp["config"]):
        out.append(
            _claim(
                name,
                "bidirectional pairs",
                "not injective: non-injectivity > 0.05 on the first frame",
                ni["bidirectional"][0],
                BIDIRECTIONAL_INJECTIVITY_MIN,
                ni["bidirectional"][0] > BIDIRECTIONAL_INJECTIVITY_MIN,
            )
        )
    else:
        out.append(
            _claim(
                name,
                "bidirectional pairs",
                "independent frames: injective too (non-injectivity < 1e-3 on every frame)",
                max(ni["bidirectional"]),
                CAUSAL_INJECTIVITY_MAX,
                max(ni["bidirectional"]) < CAUSAL_INJECTIVITY_MAX,
            )
        )
    return out


def _bidirectional_student_claims(name: str, exp: dict, key: str, student: dict) -> list[dict]:
    out = []
    eta = exp["non_injectivity"]["bidirectional"]
    frames = [i for i, e in enumerate(eta) if e > BIDIRECTIONAL_INJECTIVITY_MIN]
    if frames:
        to_map = student.get("error_to_flow_map_ce_subset", student["error_to_flow_map"])  # same pairs as the CE
        ratios = [student["error_to_conditional_expectation"][i] / to_map[i] for i in frames]
        out.append(
            _claim(
                name,
                key,
                f"converges to the conditional expectation: on frames {frames} (non-injectivity > 0.05) "
                "error to CE <= 1/3 of error to flow map",
                max(ratios),
                CE_TO_FLOW_MAP_RATIO_MAX,
                max(ratios) <= CE_TO_FLOW_MAP_RATIO_MAX,
            )
        )
    closed = exp.get("closed_form", {}).get("few_step_sampler_variance", {}).get(str(student["num_steps"]))
    if closed is not None:
        rel = [abs(v / c - 1) for v, c in zip(student["sample_variance"], closed)]
        out.append(
            _claim(
                name,
                key,
                "per-frame sample variance within 5 % of the closed form of the conditional-expectation sampler",
                max(rel),
                VARIANCE_TOLERANCE,
                max(rel) <= VARIANCE_TOLERANCE,
            )
        )
    return out


def _causal_student_claims(name: str, exp: dict, key: str, student: dict, n: int) -> list[dict]:
    std = exp["config"]["frame_std"]
    rel = [e / s for e, s in zip(student["error_to_flow_map"], std)]
    out = [
        _claim(
            name,
            key,
            "recovers the AR teacher's flow map: error < 5 % of the data's per-frame std on every frame",
            max(rel),
            CAUSAL_ERROR_FRACTION_OF_STD,
            max(rel) < CAUSAL_ERROR_FRACTION_OF_STD,
        )
    ]
    ar = exp["teachers"]["ar"]
    top = max(exp["data"]["energy_distance_noise"]["draws"])
    out.append(
        _claim(
            name,
            key,
            "energy distance within sampling noise of the (exact) AR teacher's: at most the largest fresh-data draw",
            student["energy_distance"],
            top,
            student["energy_distance"] <= top,
        )
    )
    if "off_manifold_fraction" in student:
        p, q = student["off_manifold_fraction"], ar["off_manifold_fraction"]
        tol = _fraction_tolerance(p, q, n)
        out.append(
            _claim(
                name,
                key,
                "off-manifold fraction within sampling noise of the AR teacher's",
                abs(p - q),
                tol,
                abs(p - q) <= tol,
            )
        )
    return out


def _comparison_claims(name: str, exp: dict, causal_key: str, bidirectional_key: str, n: int) -> list[dict]:
    c, b = exp["students"][causal_key], exp["students"][bidirectional_key]
    draws = exp["data"]["energy_distance_noise"]["draws"]
    ed_tol = max(draws) - min(draws)
    subject = f"{causal_key} vs {bidirectional_key}"
    gap = b["energy_distance"] - c["energy_distance"]
    out = [
        _claim(
            name,
            subject,
            "causal student's energy distance clearly lower (by more than the range of fresh-data draws)",
            gap,
            ed_tol,
            gap > ed_tol,
        )
    ]
    p, q = c["off_manifold_fraction"], b["off_manifold_fraction"]
    tol = _fraction_tolerance(p, q, n)
    out.append(_claim(name, subject, "causal student's off-manifold fraction clearly lower", q - p, tol, q - p > tol))
    return out


def _twin(students: dict, student: dict) -> str | None:
    """The key of the bidirectional-pairs student with ``student``'s step count, if there is one."""
    return next(
        (
            k
            for k, s in students.items()
            if s["pair_teacher"] == "bidirectional" and s["num_steps"] == student["num_steps"]
        ),
        None,
    )


def check_claims(metrics: dict) -> list[dict]:
    """All claims of the experiment evaluated on a metrics document (see module doc)."""
    n = metrics["settings"]["samples"]["variance"]
    out: list[dict] = []
    for name, exp in metrics["experiments"].items():
        out += _injectivity_claims(name, exp)
        students = exp["students"]
        for key, student in students.items():
            if student["pair_teacher"] == "bidirectional":
                out += _bidirectional_student_claims(name, exp, key, student)
            else:
                out += _causal_student_claims(name, exp, key, student, n)
        if exp["config"]["num_components"] > 1:
            for key, student in students.items():
                if student["pair_teacher"] == "ar":
                    twin = _twin(students, student)
                    if twin is not None:
                        out += _comparison_claims(name, exp, key, twin, n)
    return out
