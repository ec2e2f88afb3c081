"""The two budgets of every toy command: ``quick`` (minutes on 2 CPU cores) and ``paper`` (larger networks, more
steps and samples). :mod:`toy.experiment_config` and :mod:`toy.pipeline_config` map each to a configuration."""

from __future__ import annotations

import enum


class Preset(enum.Enum):
    QUICK = "quick"
    PAPER = "paper"
