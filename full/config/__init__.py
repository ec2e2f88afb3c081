"""Training configuration of the full track.

A run's configuration is built in layers, each overriding the previous one (:mod:`full.config.layers`):

1. the dataclass defaults, the published setting (:mod:`full.config.schema`; values and sources in
   ``docs/full.md``, "Published setting");
2. the recipe's options (:func:`full.recipes.recipe_settings`, e.g. ``self-forcing`` → bidirectional ODE pairs);
3. an optional preset (:mod:`full.config.presets`; ``tiny``: small random models + the synthetic set, CPU, fp32);
4. a YAML or TOML file (nested tables mirroring the dataclasses; :mod:`full.config.reading`);
5. dotted command-line overrides ``dmd.guidance_scale=3.0``.

:func:`validate` (:mod:`full.config.checks`) then checks the whole configuration and reports *all* problems in one
:class:`ConfigError`; the resolved configuration is written beside the run (``config.yaml``) by
:func:`save_config` (the run's own paths relative to the run, so a moved run folder resumes), and loads back to
an equal object (its paths absolute).
"""

from full.config.checks import validate
from full.config.errors import ConfigError
from full.config.layers import absolute_paths, build_config, is_run_config, load_config, save_config
from full.config.presets import PRESETS
from full.config.reading import from_dict, merge, parse_override, read_file
from full.config.schema import (
    DEFAULT_RECIPE,
    ARDiffusionConfig,
    CDConfig,
    DataConfig,
    DMDConfig,
    LoggingConfig,
    LoopConfig,
    ModelConfig,
    ModelPreset,
    ODEConfig,
    ODEPairsConfig,
    OptimizerConfig,
    ParallelConfig,
    Parallelism,
    Precision,
    RunConfig,
    StorageDtype,
    TimeDtype,
    TinyBaseConfig,
    VideoConfig,
)

__all__ = [
    "DEFAULT_RECIPE",
    "PRESETS",
    "ARDiffusionConfig",
    "CDConfig",
    "ConfigError",
    "DMDConfig",
    "DataConfig",
    "LoggingConfig",
    "LoopConfig",
    "ModelConfig",
    "ModelPreset",
    "ODEConfig",
    "ODEPairsConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "Parallelism",
    "Precision",
    "RunConfig",
    "StorageDtype",
    "TimeDtype",
    "TinyBaseConfig",
    "VideoConfig",
    "absolute_paths",
    "build_config",
    "from_dict",
    "is_run_config",
    "load_config",
    "merge",
    "parse_override",
    "read_file",
    "save_config",
    "validate",
]
