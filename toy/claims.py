r"""The experiment's claims, checked against its own metrics (the targets of docs/toy.md).

Each claim is a dict ``{"dataset", "subject", "claim", "kind", "statement", "value", "relation", "threshold",
"margin", "holds"}``: ``value relation threshold`` is what was compared (``relation`` one of ``<``, ``<=``,
``>``), ``margin`` how far ``value`` lies on the holding side of ``threshold`` (negative when the claim fails).

Two kinds (:data:`THEOREM`, :data:`EXPECTATION`):

* **theorem checks** — exact consequences of the statements in docs/theory.md, which no finite student can
  excuse: the causal pairs are frame-level injective (Prop. 2), the bidirectional pairs are not when frames
  depend on each other and are when they do not (Prop. 3), the Gaussian non-injectivity index equals its closed
  form within its Monte Carlo error (Prop. 4), and a student of bidirectional pairs lands on the conditional
  expectation rather than on the flow map (Prop. 1: its error to the conditional expectation is at most a third
  of its error to the flow map). A failing theorem check is a bug (in a teacher, the pairs or the estimator);
  ``cf-ref toy run`` exits non-zero (:func:`failed_theorems`);
* **empirical expectations** — a finite student within sampling noise or a stated tolerance of its target
  (its error to the AR flow map, its energy distance, its off-manifold fraction, its sample variance against the
  closed form of the sampler it approximates), and the causal-vs-bidirectional comparisons. A failure is
  reported with its margin.

Sampling noise:

* energy distance: an exact sampler's energy distance to the reference set is exchangeable with the fresh-data
  draws ``data.energy_distance_noise.draws`` (same reference, same sizes, same estimator, drawn independently of
  the reference; skewed, and shifted by the reference's own sampling error, so ranks, not a standard deviation):
  it exceeds the r-th smallest of the N draws (:func:`energy_threshold`) with probability (N + 1 − r)/(N + 1).
  The per-check level is the run's family level :data:`ENERGY_FAMILY_LEVEL` split over the run's m energy-distance
  checks (Bonferroni); N ≥ m/0.05 − 1 draws are needed (quick: m = 8, N = 159; paper: m = 10, N = 199), with
  fewer the largest draw is the threshold and the statement gives the level reached. The check itself is
  **paired**: a student of causal pairs and the exact K-step AR sampler roll out on the same noise and the same
  re-noising draws (``students.*.paired_energy``, :func:`toy.experiment.paired_energy`), and the student's
  excess energy distance over the exact sampler's must be at most the unpaired check's headroom over a typical
  exact draw, the r-th smallest draw minus the draws' median (:func:`paired_energy_tolerance`). The draw's own
  noise, shared by both samplers, cancels: an exact student's excess is 0 on every draw, where the unpaired check
  fails an exact sampler at its level (docs/toy.md §4); a bias the unpaired check flags at a typical draw, the
  paired check flags at every draw. "Clearly lower" (causal vs bidirectional students, unpaired) = lower by more
  than the draws' full range;
* a fraction p from n samples: binomial, three standard deviations of a difference of two estimates,
  :math:`3\sqrt{2\bar p(1-\bar p)/n}` with :math:`\bar p \ge 1/n`;
* the non-injectivity index :math:`\hat\eta = W/(W + \hat b)` from B outer samples with M copies each: its
  between-sample part :math:`\hat b` carries a relative error :math:`\sqrt{2/(B-1)}` and W one of
  :math:`\sqrt{2/((M-1)B)}`, so :math:`\mathrm{sd}(\hat\eta) \approx \eta(1-\eta)\sqrt{2/(B-1) + 2/((M-1)B)}`
  (Gaussian data: the conditional variance does not depend on the visible inputs); four of those, plus 1e-6.
"""

from __future__ import annotations

import math
import statistics

CAUSAL_INJECTIVITY_MAX = 1e-3
BIDIRECTIONAL_INJECTIVITY_MIN = 0.05
CE_TO_FLOW_MAP_RATIO_MAX = 1 / 3
VARIANCE_TOLERANCE = 0.05
CAUSAL_ERROR_FRACTION_OF_STD = 0.05
NOISE_SIGMAS = 3.0
INDEX_SIGMAS = 4.0
INDEX_FLOOR = 1e-6
ENERGY_FAMILY_LEVEL = 0.05  # false-alarm probability of all of a run's energy-distance checks together

THEOREM = "theorem"
EXPECTATION = "expectation"
_MARGIN = {"<": lambda v, t: t - v, "<=": lambda v, t: t - v, ">": lambda v, t: v - t}


def _claim(
    dataset: str, subject: str, claim: str, value: float, relation: str, threshold: float, kind: str, statement: str
) -> dict:
    """One claim: ``value relation threshold`` (see module doc)."""
    margin = _MARGIN[relation](value, threshold)
    holds = margin > 0 if relation in ("<", ">") else margin >= 0
    return {
        "dataset": dataset,
        "subject": subject,
        "claim": claim,
        "kind": kind,
        "statement": statement,
        "value": value,
        "relation": relation,
        "threshold": threshold,
        "margin": margin,
        "holds": bool(holds),
    }


def failed_theorems(claims: list[dict]) -> list[dict]:
    """The theorem checks among ``claims`` that fail (each one a bug, see module doc)."""
    return [c for c in claims if c["kind"] == THEOREM and not c["holds"]]


def tally(claims: list[dict]) -> dict:
    """``{kind: {"held", "total"}}`` for both kinds."""
    return {
        kind: {
            "held": sum(c["holds"] for c in claims if c["kind"] == kind),
            "total": sum(c["kind"] == kind for c in claims),
        }
        for kind in (THEOREM, EXPECTATION)
    }


def _fraction_tolerance(p: float, q: float, n: int) -> float:
    mean = max(0.5 * (p + q), 1.0 / n)
    return NOISE_SIGMAS * math.sqrt(2 * mean * (1 - mean) / n)


def energy_threshold(draws: list[float], level: float) -> tuple[float, float]:
    """``(threshold, reached level)``: the r-th smallest of the N ``draws``, r = ⌈(N + 1)(1 − level)⌉, which a value
    exchangeable with the draws exceeds with probability (N + 1 − r)/(N + 1) ≤ ``level``; with too few draws
    (r > N) the largest, reached level 1/(N + 1)."""
    if not draws or not 0.0 < level < 1.0:
        raise ValueError(f"need at least one draw and a level in (0, 1), got {len(draws)} draws, level {level}")
    n = len(draws)
    r = min(n, math.ceil((n + 1) * (1 - level) - 1e-9))
    return sorted(draws)[r - 1], (n + 1 - r) / (n + 1)


def _frames_dependent(config: dict) -> bool:
    return bool(config.get("frames_dependent", True))


def _injectivity_claims(name: str, exp: dict) -> list[dict]:
    ni = exp["non_injectivity"]
    out = [
        _claim(
            name, "causal pairs", "frame-level injective: non-injectivity < 1e-3 on every frame",
            max(ni["ar"]), "<", CAUSAL_INJECTIVITY_MAX, THEOREM, "Prop. 2",
        )
    ]  # fmt: skip
    if _frames_dependent(exp["config"]):
        claim = "not injective: non-injectivity > 0.05 on the first frame"
        out.append(
            _claim(name, "bidirectional pairs", claim, ni["bidirectional"][0], ">", BIDIRECTIONAL_INJECTIVITY_MIN,
                   THEOREM, "Prop. 3")
        )  # fmt: skip
    else:
        claim = "independent frames: injective too (non-injectivity < 1e-3 on every frame)"
        out.append(
            _claim(name, "bidirectional pairs", claim, max(ni["bidirectional"]), "<", CAUSAL_INJECTIVITY_MAX,
                   THEOREM, "Prop. 3")
        )  # fmt: skip
    return out


def _index_tolerance(eta: float, outer: int, copies: int) -> float:
    """Four Monte Carlo standard deviations of the estimated index (see module doc), plus a round-off floor."""
    return INDEX_SIGMAS * eta * (1 - eta) * math.sqrt(2 / (outer - 1) + 2 / ((copies - 1) * outer)) + INDEX_FLOOR


def _closed_form_index_claims(name: str, exp: dict, settings: dict) -> list[dict]:
    """Gaussian datasets: the bidirectional pairs' index against :math:`\\sum_{j>i}\\|R_{ij}\\|^2 / \\mathrm{tr}\\,\\Sigma_{ii}`."""
    closed = exp.get("closed_form")
    if not closed or "num_ce_pairs" not in settings:
        return []
    exact = [lost / total for lost, total in zip(closed["lost_variance"], closed["data_variance"])]
    measured = exp["non_injectivity"]["bidirectional"]
    tol = [_index_tolerance(e, settings["num_ce_pairs"], settings["num_resamples"]) for e in exact]
    worst = max(range(len(exact)), key=lambda i: abs(measured[i] - exact[i]) / tol[i])
    claim = "bidirectional pairs' non-injectivity equals its closed form on every frame (4 Monte Carlo sd)"
    diff = abs(measured[worst] - exact[worst])
    return [_claim(name, "bidirectional pairs", claim, diff, "<=", tol[worst], THEOREM, "Prop. 4")]


def _bidirectional_student_claims(name: str, exp: dict, key: str, student: dict) -> list[dict]:
    out = []
    eta = exp["non_injectivity"]["bidirectional"]
    frames = [i for i, e in enumerate(eta) if e > BIDIRECTIONAL_INJECTIVITY_MIN]
    if frames:
        to_map = student.get("error_to_flow_map_ce_subset", student["error_to_flow_map"])  # same pairs as the CE
        ratios = [student["error_to_conditional_expectation"][i] / to_map[i] for i in frames]
        claim = (
            f"converges to the conditional expectation: on frames {frames} (non-injectivity > 0.05) "
            "error to CE <= 1/3 of error to flow map"
        )
        out.append(_claim(name, key, claim, max(ratios), "<=", CE_TO_FLOW_MAP_RATIO_MAX, THEOREM, "Prop. 1"))
    closed = exp.get("closed_form", {}).get("few_step_sampler_variance", {}).get(str(student["num_steps"]))
    if closed is not None:
        rel = [abs(v / c - 1) for v, c in zip(student["sample_variance"], closed)]
        claim = "per-frame sample variance within 5 % of the closed form of the conditional-expectation sampler"
        out.append(_claim(name, key, claim, max(rel), "<=", VARIANCE_TOLERANCE, EXPECTATION, "Prop. 4, corollary"))
    return out


def paired_energy_tolerance(draws: list[float], level: float) -> tuple[float, float]:
    """``(tolerance, reached level)``: the calibrated check's headroom over a typical exact draw, the r-th smallest
    of the ``draws`` (:func:`energy_threshold` at ``level``) minus their median (module doc)."""
    top, reached = energy_threshold(draws, level)
    return top - statistics.median(draws), reached


def _energy_claim(name: str, exp: dict, key: str, student: dict, checks: int) -> dict:
    """The student's energy distance in excess of the exact K-step sampler's on the same random numbers, against
    the calibrated check's headroom (module doc)."""
    draws = exp["data"]["energy_distance_noise"]["draws"]
    tolerance, reached = paired_energy_tolerance(draws, ENERGY_FAMILY_LEVEL / checks)
    paired = student["paired_energy"]
    claim = (
        f"energy distance within sampling noise of the exact {student['num_steps']}-step AR sampler's on the same "
        f"random numbers: excess at most the fresh-data draws' upper {100 * reached:.2g} % point minus their median "
        f"({len(draws)} draws, {checks} such checks in the run)"
    )
    excess = paired["student"] - paired["exact"]
    return _claim(name, key, claim, excess, "<=", tolerance, EXPECTATION, "Props. 1 + 2")


def _causal_student_claims(name: str, exp: dict, key: str, student: dict, n: int, checks: int) -> list[dict]:
    std = exp["config"]["frame_std"]
    rel = [e / s for e, s in zip(student["error_to_flow_map"], std)]
    claim = "recovers the AR teacher's flow map: error < 5 % of the data's per-frame std on every frame"
    out = [_claim(name, key, claim, max(rel), "<", CAUSAL_ERROR_FRACTION_OF_STD, EXPECTATION, "Props. 1 + 2")]
    ar = exp["teachers"]["ar"]
    out.append(_energy_claim(name, exp, key, student, checks))
    if "off_manifold_fraction" in student:
        p, q = student["off_manifold_fraction"], ar["off_manifold_fraction"]
        tol = _fraction_tolerance(p, q, n)
        claim = "off-manifold fraction within sampling noise of the AR teacher's"
        out.append(_claim(name, key, claim, abs(p - q), "<=", tol, EXPECTATION, "Props. 1 + 2"))
    return out


def _comparison_claims(name: str, exp: dict, causal_key: str, bidirectional_key: str, n: int) -> list[dict]:
    c, b = exp["students"][causal_key], exp["students"][bidirectional_key]
    draws = exp["data"]["energy_distance_noise"]["draws"]
    ed_tol = max(draws) - min(draws)
    subject = f"{causal_key} vs {bidirectional_key}"
    gap = b["energy_distance"] - c["energy_distance"]
    claim = "causal student's energy distance clearly lower (by more than the range of fresh-data draws)"
    out = [_claim(name, subject, claim, gap, ">", ed_tol, EXPECTATION, "Prop. 3, corollary")]
    p, q = c["off_manifold_fraction"], b["off_manifold_fraction"]
    tol = _fraction_tolerance(p, q, n)
    claim = "causal student's off-manifold fraction clearly lower"
    out.append(_claim(name, subject, claim, q - p, ">", tol, EXPECTATION, "Prop. 3, corollary"))
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
    checks = sum(  # the run's energy-distance checks: one per student of causal pairs
        s["pair_teacher"] != "bidirectional"
        for exp in metrics["experiments"].values()
        for s in exp["students"].values()
    )
    out: list[dict] = []
    for name, exp in metrics["experiments"].items():
        out += _injectivity_claims(name, exp) + _closed_form_index_claims(name, exp, metrics["settings"])
        students = exp["students"]
        for key, student in students.items():
            if student["pair_teacher"] == "bidirectional":
                out += _bidirectional_student_claims(name, exp, key, student)
            else:
                out += _causal_student_claims(name, exp, key, student, n, checks)
        if exp["config"]["num_components"] > 1:
            for key, student in students.items():
                if student["pair_teacher"] == "ar":
                    twin = _twin(students, student)
                    if twin is not None:
                        out += _comparison_claims(name, exp, key, twin, n)
    return out
