"""What a re-run of an existing run folder may change: settings that do not alter work already done.

A run folder keeps the configuration its stages ran with (``config.yaml``). When the folder is used again —
``--resume``, or ``--stage NAME`` after other stages finished — the new configuration is compared with it
setting by setting (:func:`review_changes`). A change is **accepted** when it cannot alter finished work:

* a path (:data:`full.config.schema.PATH`: fixing a wrong ``dmd.real_score_path``, a moved data set) — the files'
  checksums, not their locations, guard their content;
* how the run is carried out, not what it computes: ``logging.*``, checkpoint cadence, ``parallel.strategy``,
  ``parallel.gradient_checkpointing``, ``parallel.cpu_threads``;
* a setting only stages that have not started use (:func:`stages_using`), e.g. ``dmd.guidance_scale`` before DMD;
* ``<stage>.loop.steps`` of a stage that has not finished.

Anything else is **refused**, naming the stages that already ran with the old value, so ``config.yaml`` never
records a setting its finished stages did not use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from full.config import RunConfig
from full.config.layers import PATH_SETTINGS, relative_table
from full.recipes import Stage

HOW_NOT_WHAT = (
    "logging.",
    "parallel.gradient_checkpointing",
    "parallel.cpu_threads",
    ".loop.checkpoint_every",
    ".loop.keep_checkpoints",
)
"""Settings (prefixes / suffixes) that change how a run is carried out, not what it computes."""

_SECTIONS = {s.section: s for s in Stage}


def stages_using(name: str) -> set[Stage]:
    """The stages whose results depend on setting ``name``: its own stage for a stage section, every stage but
    ``ar-diffusion`` for ``recipe`` (it decides what feeds what), every stage for shared settings."""
    section = name.split(".", 1)[0]
    if section in _SECTIONS:
        return {_SECTIONS[section]}
    if name == "recipe":
        return set(Stage) - {Stage.AR_DIFFUSION}
    return set(Stage)


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class Review:
    """The differences between a run's saved configuration and a new one: ``accepted`` and ``refused`` lines."""

    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _names(stages: Iterable[Stage]) -> str:
    return ", ".join(s.value for s in sorted(stages, key=list(Stage).index))


def _judge(name: str, finished: set[Stage], started: set[Stage]) -> tuple[bool, str]:
    """(accepted, why) for a change of setting ``name``."""
    if name in PATH_SETTINGS:
        return True, "a path"
    if any(name.startswith(p) or name.endswith(p) for p in HOW_NOT_WHAT):
        return True, "how the run is carried out, not what it computes"
    if name.endswith(".loop.steps"):
        stage = _SECTIONS[name.split(".", 1)[0]]
        if stage in finished:
            return False, f"stage {stage.value} has finished with the old value"
        return True, f"stage {stage.value} has not finished"
    ran = stages_using(name) & (finished | started)
    if ran:
        return False, f"stage(s) {_names(ran)} already ran with the old value"
    return True, "only stages that have not started use it"


def review_changes(saved: RunConfig, config: RunConfig, finished: set[Stage], started: set[Stage]) -> Review:
    """Compare the saved and the new configuration and judge every difference. Paths inside each run's folder are
    compared relative to it (a moved run is the same run), the others absolute."""
    old, new = _flat(relative_table(saved, saved.out)), _flat(relative_table(config, config.out))
    review = Review()
    for name in sorted(set(old) | set(new)):
        if name == "out" or old.get(name) == new.get(name):
            continue
        ok, why = _judge(name, finished, started)
        (review.accepted if ok else review.refused).append(f"{name}: {old.get(name)!r} → {new.get(name)!r} ({why})")
    return review
