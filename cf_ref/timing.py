"""Wall-clock and CPU seconds of a piece of work: one timer for the tracks and the benchmarks.

On a machine shared with other work, wall time says what this run took and CPU time what an idle machine would
need; every timing in cf-ref records both. :class:`Stopwatch` accumulates the two over any number of timed
spans; :class:`StageTimes` keeps one stopwatch per named stage (e.g. ``"pairs"``, ``"student causal-ode"``) and
tells a progress callback when a stage finishes.

CPU time is :func:`time.process_time` — this process only (worker processes report their own).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Stopwatch:
    """Accumulated wall-clock seconds (``time.perf_counter``) and process CPU seconds (``time.process_time``)."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[Stopwatch]:
        """Add the wall and CPU seconds spent inside the ``with`` block (also when it raises)."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu

    def minus(self, other: Stopwatch) -> Stopwatch:
        """The time of this stopwatch without ``other``'s (e.g. training time without its evaluations)."""
        return Stopwatch(self.wall - other.wall, self.cpu - other.cpu)

    def plus(self, other: Stopwatch) -> Stopwatch:
        """The summed time of two stopwatches (e.g. one stage over several processes)."""
        return Stopwatch(self.wall + other.wall, self.cpu + other.cpu)

    def as_dict(self) -> dict[str, float]:
        """``{"wall_s", "cpu_s"}``, JSON-ready."""
        return {"wall_s": self.wall, "cpu_s": self.cpu}


@dataclass
class StageTimes:
    """One :class:`Stopwatch` per named stage; ``report(label)`` is called when a stage's span ends."""

    report: Callable[[str], object] | None = None
    stages: dict[str, Stopwatch] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[Stopwatch]:
        """Time the ``with`` block under ``label`` (spans with one label add up), then report it."""
        with self.stages.setdefault(label, Stopwatch()).running() as watch:
            yield watch
        if self.report is not None:
            self.report(label)

    def merged(self, other: StageTimes) -> StageTimes:
        """The per-stage sums of two records (stages of either), without a report callback."""
        labels = list(self.stages) + [k for k in other.stages if k not in self.stages]
        zero = Stopwatch()
        return StageTimes(stages={k: self.stages.get(k, zero).plus(other.stages.get(k, zero)) for k in labels})

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{label: {"wall_s", "cpu_s"}}``, JSON-ready."""
        return {label: watch.as_dict() for label, watch in self.stages.items()}
