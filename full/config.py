"""Training configuration of the full track: dataclasses with the published defaults in one place.

Every default below is the published setting (Causal Forcing / Self Forcing configs, see
``/work/shared/REFERENCE.md``) unless its comment says otherwise. A run's configuration is built in layers,
each overriding the previous one:

1. the dataclass defaults in this file;
2. the recipe's stage options (:data:`full.recipes.RECIPES`, e.g. ``self-forcing`` → bidirectional ODE pairs);
3. an optional preset (``tiny``: small random models + the synthetic set, CPU, fp32);
4. a YAML or TOML file (nested tables mirroring the dataclasses);
5. dotted command-line overrides ``dmd.guidance_scale=3.0``.

:func:`validate` then checks the whole configuration and reports *all* problems in one
:class:`ConfigError`; the resolved configuration is written beside the run (``config.yaml``) by
:func:`save_config`, and loads back to an equal object.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cf_ref.io import write_text
from cf_ref.schedule import Granularity, LossWeighting, few_step_sigmas, sigma_grid


class ConfigError(ValueError):
    """A configuration that cannot run; the message lists every problem found."""


# --------------------------------------------------------------------------------------------- choices


class Stage(enum.Enum):
    """The stages of the full track, in pipeline order."""

    AR_DIFFUSION = "ar-diffusion"  # AR teacher from the bidirectional model by teacher forcing
    ODE_PAIRS = "ode-pairs"  # PF-ODE trajectories (AR teacher with clean context, or bidirectional baseline)
    ODE = "ode"  # ODE regression of the few-step causal student on the pairs
    CD = "cd"  # causal consistency distillation along the AR teacher's PF-ODE (Causal Forcing++)
    DMD = "dmd"  # asymmetric DMD with self-forcing rollout


class Recipe(enum.Enum):
    """Stage chains of the field; :data:`full.recipes.RECIPES` says what each one runs."""

    CAUSAL_FORCING = "causal-forcing"
    CAUSAL_FORCING_PP = "causal-forcing-pp"
    SELF_FORCING = "self-forcing"
    CAUSVID = "causvid"


class Forcing(enum.Enum):
    """Context of the AR-diffusion teacher during training."""

    TEACHER = "teacher"  # clean ground-truth context, [clean ; noisy] teacher-forcing layout (published)
    DIFFUSION = "diffusion"  # diffusion forcing: context noised with its own per-block level (ablation)


class PairTeacher(enum.Enum):
    """Whose PF-ODE the ODE pairs follow."""

    AR = "ar"  # the AR teacher under ground-truth clean context (Causal Forcing)
    BIDIRECTIONAL = "bidirectional"  # the bidirectional base model from noise (CausVid / Self Forcing baseline)


class GeneratorRollout(enum.Enum):
    """How the DMD generator produces its samples."""

    SELF = "self"  # self-forcing: block by block on its own outputs with its KV cache (Self/Causal Forcing)
    DATA = "data"  # teacher-forced on clean data context, all blocks in parallel (CausVid-style, needs latents)


class Parallelism(enum.Enum):
    """How the trained modules are replicated over ``torchrun`` processes (ignored with one process)."""

    DDP = "ddp"
    FSDP = "fsdp"  # FSDP2 ``fully_shard`` per transformer block, then the root


class Precision(enum.Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # bf16 autocast (DDP) or bf16 parameters with fp32 reduction (FSDP2); fp32 master weights


class StorageDtype(enum.Enum):
    """dtype of tensors written to a set (read back as float32)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"

    @property
    def torch(self):
        import torch

        return getattr(torch, self.value)


class ModelPreset(enum.Enum):
    """Models built in code instead of loaded from a folder."""

    TINY = "tiny"  # a few layers, small dims, trained on the synthetic set first (full.stages.base): offline CPU


# --------------------------------------------------------------------------------------------- sections


@dataclass
class TinyBaseConfig:
    """The tiny preset's stand-in for the pretrained model: a tiny random DiT trained bidirectionally on the
    synthetic set (flow matching) before the recipe starts. Not from the paper; only used with preset tiny."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 2.0e-3
    caption_dropout: float = 0.1  # probability of training on the negative prompt (unconditional) instead
    videos: int = 64  # synthetic latent videos generated for the preset


@dataclass
class ModelConfig:
    """The bidirectional base model (Wan2.1-T2V-1.3B in diffusers layout) and the AR block structure."""

    path: str | None = None  # folder of the base transformer (``from_pretrained``); None with a preset
    preset: ModelPreset | None = None
    tiny_base: TinyBaseConfig = field(default_factory=TinyBaseConfig)
    block_size: int = 3  # latent frames per AR block: 3 chunk-wise (published default), 1 frame-wise
    shift: float = 5.0  # Wan's timestep shift in this setting
    few_step_timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)  # student's list before the shift


@dataclass
class VideoConfig:
    """Latent video shape (Wan VAE: 4× temporal, 8×8 spatial; 480×832, 81 frames → 21×60×104)."""

    latent_frames: int = 21
    latent_height: int = 60
    latent_width: int = 104


@dataclass
class DataConfig:
    """Prepared sets (``cf-ref full prepare``); each stage says which one it needs."""

    latents: str | None = None  # (latents, text) set: ar-diffusion, ode-pairs, cd, dmd with rollout=data
    prompts: str | None = None  # text-only set for DMD (falls back to the latent set's texts when None)


@dataclass
class ParallelConfig:
    strategy: Parallelism = Parallelism.FSDP  # published: FSDP (hybrid_full)
    precision: Precision = Precision.BF16  # published: mixed_precision true
    gradient_checkpointing: bool = True  # published: true
    cpu_threads: int | None = None  # torch intra-op threads when running on the CPU; None = torch's default


@dataclass
class LoggingConfig:
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = False  # needs the ``tensorboard`` package
    log_every: int = 1  # steps between JSONL metric lines
    sample_every: int = 0  # steps between sample videos (0 = only at the end of a stage); not from the paper
    sample_count: int = 1  # prompts sampled each time (0 = no sample videos)
    vae: str | None = None  # AutoencoderKLWan folder (or a Wan folder with vae/) to decode samples; None = previews


@dataclass
class LoopConfig:
    """The shared training loop of a stage."""

    steps: int = 2000
    batch_size: int = 1  # per process and micro-batch (published: 1)
    grad_accum: int = 1  # micro-batches per optimizer step (published: grad_accum 1 on 64 GPUs)
    checkpoint_every: int = 250  # not from the paper
    keep_checkpoints: int = 2  # newest checkpoints kept on disk (the last good one is never deleted)


@dataclass
class OptimizerConfig:
    """AdamW; constant learning rate as in the published configs."""

    lr: float = 2.0e-6
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.01
    max_grad_norm: float = 10.0


@dataclass
class ArDiffusionConfig:
    """Stage 1: AR diffusion teacher trained from the bidirectional model's weights."""

    init: str | None = None  # weights to start from; None = the base model
    forcing: Forcing = Forcing.TEACHER
    granularity: Granularity = Granularity.BLOCK  # one σ per block
    weighting: LossWeighting = LossWeighting.BELL  # the schedule's training weight
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=2000))  # README: "no less than 2K steps"
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class OdePairsConfig:
    """Stage 2: PF-ODE trajectories, stored at the few-step σ list plus the end point."""

    teacher: PairTeacher = PairTeacher.AR
    init: str | None = (
        None  # weights to start from; None = the AR teacher of the run (teacher=ar) or the base model (bidirectional)
    )
    num_steps: int = 48  # Euler steps
    guidance_scale: float = 6.0
    precision: Precision = Precision.FP32  # the published curation runs the teacher in fp32 (bf16: faster)
    storage: StorageDtype = StorageDtype.FLOAT32  # of the stored states (the authors store fp16: half the disk)
    batch_size: int = 1  # videos per teacher call and process
    shard_size: int = 16  # pairs per safetensors shard; not from the paper
    max_pairs: int | None = None  # None = one pair per latent video


@dataclass
class OdeConfig:
    """Stage 3a: ODE regression of the few-step causal student."""

    init: str | None = (
        None  # weights to start from; None = the AR teacher of the run if the recipe trains one, else the base model
    )
    pairs: str | None = None  # ODE-pair set; None = the run's ode-pairs output
    # one trajectory state per video (Causal Forcing's causal ODE); the self-forcing / causvid recipes set 'block'
    # (Self Forcing's ode_regression draws one state per block)
    index_granularity: Granularity = Granularity.SAMPLE
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000))  # README: "no less than 1K steps"
    optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(betas=(0.9, 0.999)))


@dataclass
class CdConfig:
    """Stage 3b: causal consistency distillation (Causal Forcing++)."""

    init: str | None = (
        None  # weights to start from; None = the run's AR teacher (student, EMA target and teacher alike)
    )
    num_steps: int = 48  # N of the discretised PF-ODE
    guidance_scale: float = 3.0  # standard CFG on the teacher's velocity, as model/naive_consistency.py
    ema_decay: float = 0.99  # of the target network (and the exported EMA generator)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=3000))  # README: "no less than 3K steps"
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class DmdConfig:
    """Stage 4: asymmetric DMD with self-forcing rollout."""

    init: str | None = None  # weights to start from; None = the run's ODE or CD output (generator)
    real_score_path: str | None = None  # bidirectional teacher folder (published: Wan2.1-T2V-14B); None = model.path
    # CFG w on the real score, v_u + w(v_c - v_u) as everywhere in cf-ref. The authors' guidance_scale 3.0 is applied
    # as x0_c + 3(x0_c - x0_u) (model/dmd.py of Self-/Causal-Forcing), i.e. w = 1 + 3 = 4.
    guidance_scale: float = 4.0
    critic_updates_per_generator: int = 5  # dfake_gen_update_ratio
    rollout: GeneratorRollout = GeneratorRollout.SELF
    same_exit_across_blocks: bool = True  # one random exit step shared by all blocks
    context_noise: float = 0.0  # σ at which finished blocks are committed to the KV cache
    t_min: float = 20.0  # DMD / critic timesteps: uniform, shifted, clamped to [t_min, t_max]
    t_max: float = 980.0
    ema_decay: float = 0.99
    ema_start: int = 200  # step from which the generator EMA is kept
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=500))  # README: ~100 generator updates
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    critic_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=4.0e-7))


@dataclass
class RunConfig:
    """Everything a ``cf-ref full train`` run needs."""

    recipe: Recipe = Recipe.CAUSAL_FORCING
    out: str = "runs/causal-forcing"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ar_diffusion: ArDiffusionConfig = field(default_factory=ArDiffusionConfig)
    ode_pairs: OdePairsConfig = field(default_factory=OdePairsConfig)
    ode: OdeConfig = field(default_factory=OdeConfig)
    cd: CdConfig = field(default_factory=CdConfig)
    dmd: DmdConfig = field(default_factory=DmdConfig)


STAGE_SECTION = {
    Stage.AR_DIFFUSION: "ar_diffusion",
    Stage.ODE_PAIRS: "ode_pairs",
    Stage.ODE: "ode",
    Stage.CD: "cd",
    Stage.DMD: "dmd",
}
"""Config section of each stage."""


# --------------------------------------------------------------------------------------------- dict <-> dataclass


def to_dict(obj: Any) -> Any:
    """Plain YAML-able data: dataclasses → dicts, enums → values, tuples → lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp``, or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: may not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {options}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table of settings, got {value!r}")
        return from_dict(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}") from None
    if value is None:
        raise ConfigError(f"{where}: may not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover - a bug in this file


def _unknown_key(cls: type, key: str, where: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}; known: {', '.join(names)}")


def from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from nested plain data; missing keys keep their defaults."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown_key(cls, key, where)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where != "config" else key)
    return cls(**kwargs)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: tables merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"dmd.guidance_scale=3.0"`` → ``{"dmd": {"guidance_scale": 3.0}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. dmd.guidance_scale=3.0")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty name in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot read value {raw!r}: {exc}") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) configuration file into nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    elif path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(f"config file {path}: TOML needs Python >= 3.11 (tomllib); use YAML") from None

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    else:
        raise ConfigError(f"config file {path}: expected a .yaml, .yml or .toml file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings at the top level")
    return data


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        # Tiny models + the synthetic moving-shapes set (generated into <out>/data; the base model is a tiny
        # DiT trained on it first, see full.stages.base), CPU, fp32. Step counts: a demo, not a result.
        "out": "runs/tiny",
        "model": {"preset": "tiny", "block_size": 2},
        "video": {"latent_frames": 4, "latent_height": 8, "latent_width": 8},
        # one thread: tiny tensors gain nothing from more, and a loaded machine makes them spin (4 min vs 30 s)
        "parallel": {"strategy": "ddp", "precision": "fp32", "gradient_checkpointing": False, "cpu_threads": 1},
        "logging": {"progress": True, "sample_every": 0},
        "ar_diffusion": {"loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50}, "optim": {"lr": 1e-3}},
        # guidance 1: a synthetic caption fixes the colour exactly, so CFG w > 1 scales the colour w-fold
        "ode_pairs": {"num_steps": 8, "guidance_scale": 1.0, "batch_size": 8, "shard_size": 16, "max_pairs": 64},
        "ode": {"loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50}, "optim": {"lr": 1e-3}},
        "cd": {
            "num_steps": 8,
            "guidance_scale": 1.0,
            "loop": {"steps": 150, "batch_size": 4, "checkpoint_every": 50},
            "optim": {"lr": 1e-3},
        },
        "dmd": {
            "guidance_scale": 1.0,
            "ema_start": 0,
            "loop": {"steps": 100, "batch_size": 2, "checkpoint_every": 50},
            "optim": {"lr": 1e-4},
            "critic_optim": {"lr": 1e-3},
        },
    }
}
"""Named presets, applied after the recipe and before the file. ``tiny`` is the offline CPU demo."""


def build_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    preset: str | None = None,
    recipe: str | Recipe | None = None,
) -> RunConfig:
    """Layer defaults → recipe → preset → file → overrides (see module doc), then :func:`validate`.

    The recipe is taken from ``recipe``, else from the overrides / file / preset, else the default.
    """
    from full.recipes import recipe_settings

    layers: list[dict[str, Any]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        layers.append(PRESETS[preset])
    if path is not None:
        layers.append(read_file(path))
    layers.extend(parse_override(o) for o in overrides)
    if recipe is not None:
        layers.append({"recipe": recipe.value if isinstance(recipe, Recipe) else recipe})
    user: dict[str, Any] = {}
    for layer in layers:
        user = merge(user, layer)
    chosen = _coerce(user.get("recipe", RunConfig.recipe.value), Recipe, "recipe")
    config = from_dict(RunConfig, merge(recipe_settings(chosen), user))
    validate(config)
    return config


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically); :func:`load_config` reads it back."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
    write_text(path, "# resolved cf-ref full-track configuration\n" + text)


def load_config(path: str | Path) -> RunConfig:
    """Read a saved (resolved) configuration; no recipe layer is applied, it is already resolved."""
    config = from_dict(RunConfig, read_file(path))
    validate(config)
    return config


# --------------------------------------------------------------------------------------------- validation


def _check_loop(loop: LoopConfig, where: str, errors: list[str]) -> None:
    if loop.steps < 1:
        errors.append(f"{where}.steps must be >= 1, got {loop.steps}")
    if loop.batch_size < 1:
        errors.append(f"{where}.batch_size must be >= 1, got {loop.batch_size}")
    if loop.grad_accum < 1:
        errors.append(f"{where}.grad_accum must be >= 1, got {loop.grad_accum}")
    if loop.checkpoint_every < 1:
        errors.append(f"{where}.checkpoint_every must be >= 1, got {loop.checkpoint_every}")
    if loop.keep_checkpoints < 1:
        errors.append(
            f"{where}.keep_checkpoints must be >= 1 (the last good checkpoint is kept), got {loop.keep_checkpoints}"
        )


def _check_optim(optim: OptimizerConfig, where: str, errors: list[str]) -> None:
    if optim.lr <= 0:
        errors.append(f"{where}.lr must be > 0, got {optim.lr}")
    if not all(0.0 <= b < 1.0 for b in optim.betas):
        errors.append(f"{where}.betas must lie in [0, 1), got {list(optim.betas)}")
    if optim.weight_decay < 0:
        errors.append(f"{where}.weight_decay must be >= 0, got {optim.weight_decay}")
    if optim.max_grad_norm <= 0:
        errors.append(f"{where}.max_grad_norm must be > 0, got {optim.max_grad_norm}")


def validate(config: RunConfig) -> None:
    """Cross-field checks; raises one :class:`ConfigError` listing every problem."""
    errors: list[str] = []
    m, v = config.model, config.video
    if (m.path is None) == (m.preset is None):
        errors.append("model: give exactly one of model.path (a diffusers Wan transformer folder) or model.preset")
    if m.block_size < 1:
        errors.append(f"model.block_size must be >= 1, got {m.block_size}")
    elif v.latent_frames % m.block_size:
        errors.append(
            f"model.block_size {m.block_size} does not divide video.latent_frames {v.latent_frames}; "
            f"use a frame count that is a multiple of {m.block_size}"
        )
    if m.shift <= 0:
        errors.append(f"model.shift must be > 0, got {m.shift}")
    tb = m.tiny_base
    if tb.steps < 0 or tb.batch_size < 1 or tb.lr <= 0 or tb.videos < 1 or not 0 <= tb.caption_dropout <= 1:
        errors.append(
            f"model.tiny_base: need steps >= 0, batch_size >= 1, lr > 0, videos >= 1, caption_dropout in [0, 1], got {dataclasses.asdict(tb)}"
        )
    few_step_ok = m.shift > 0
    try:
        few_step_sigmas(m.few_step_timesteps, m.shift if m.shift > 0 else 1.0)
    except ValueError as exc:
        errors.append(f"model.few_step_timesteps: {exc}")
        few_step_ok = False
    if min(v.latent_frames, v.latent_height, v.latent_width) < 1:
        errors.append(f"video: latent sizes must be >= 1, got {dataclasses.asdict(v)}")
    if config.parallel.cpu_threads is not None and config.parallel.cpu_threads < 1:
        errors.append(f"parallel.cpu_threads must be >= 1 or null, got {config.parallel.cpu_threads}")
    if config.seed < 0:
        errors.append(f"seed must be >= 0, got {config.seed}")
    if config.logging.log_every < 1:
        errors.append(f"logging.log_every must be >= 1, got {config.logging.log_every}")
    if config.logging.sample_every < 0 or config.logging.sample_count < 0:
        errors.append("logging.sample_every and logging.sample_count must be >= 0")
    if config.logging.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            errors.append("logging.tensorboard is on but TensorBoard is not installed (pip install tensorboard)")

    _check_loop(config.ar_diffusion.loop, "ar_diffusion.loop", errors)
    _check_optim(config.ar_diffusion.optim, "ar_diffusion.optim", errors)
    if config.ar_diffusion.granularity is Granularity.FRAME and m.block_size != 1:
        errors.append("ar_diffusion.granularity 'frame' needs model.block_size 1 (one σ per block otherwise)")

    pairs = config.ode_pairs
    if pairs.num_steps < 1 or pairs.batch_size < 1 or pairs.shard_size < 1:
        errors.append("ode_pairs.num_steps, batch_size and shard_size must be >= 1")
    elif few_step_ok:
        _check_on_grid(m, pairs.num_steps, "ode_pairs.num_steps", errors)
    if pairs.guidance_scale < 0:
        errors.append(f"ode_pairs.guidance_scale must be >= 0, got {pairs.guidance_scale}")
    if pairs.max_pairs is not None and pairs.max_pairs < 1:
        errors.append(f"ode_pairs.max_pairs must be >= 1 or null, got {pairs.max_pairs}")

    _check_loop(config.ode.loop, "ode.loop", errors)
    _check_optim(config.ode.optim, "ode.optim", errors)
    if config.ode.index_granularity is Granularity.FRAME and m.block_size != 1:
        errors.append("ode.index_granularity 'frame' needs model.block_size 1")

    cd = config.cd
    _check_loop(cd.loop, "cd.loop", errors)
    _check_optim(cd.optim, "cd.optim", errors)
    if cd.num_steps < 2:
        errors.append(f"cd.num_steps must be >= 2, got {cd.num_steps}")
    if not 0.0 <= cd.ema_decay <= 1.0:
        errors.append(f"cd.ema_decay must lie in [0, 1], got {cd.ema_decay}")
    if cd.guidance_scale < 0:
        errors.append(f"cd.guidance_scale must be >= 0, got {cd.guidance_scale}")

    d = config.dmd
    _check_loop(d.loop, "dmd.loop", errors)
    _check_optim(d.optim, "dmd.optim", errors)
    _check_optim(d.critic_optim, "dmd.critic_optim", errors)
    if d.critic_updates_per_generator < 1:
        errors.append(f"dmd.critic_updates_per_generator must be >= 1, got {d.critic_updates_per_generator}")
    if not 0.0 <= d.t_min < d.t_max <= 1000.0:
        errors.append(f"dmd: need 0 <= t_min < t_max <= 1000, got t_min={d.t_min}, t_max={d.t_max}")
    if not 0.0 <= d.ema_decay <= 1.0:
        errors.append(f"dmd.ema_decay must lie in [0, 1], got {d.ema_decay}")
    if d.ema_start < 0:
        errors.append(f"dmd.ema_start must be >= 0, got {d.ema_start}")
    if not 0.0 <= d.context_noise < 1.0:
        errors.append(f"dmd.context_noise must lie in [0, 1), got {d.context_noise}")
    if d.guidance_scale < 0:
        errors.append(f"dmd.guidance_scale must be >= 0, got {d.guidance_scale}")
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))


def _check_on_grid(m: ModelConfig, num_steps: int, where: str, errors: list[str]) -> None:
    """The kept ODE states must sit exactly on the teacher's grid: the few-step σ's must be grid points."""
    grid = sigma_grid(num_steps, m.shift)
    for s in few_step_sigmas(m.few_step_timesteps, m.shift).tolist():
        if float((grid - s).abs().min()) > 1e-9:
            errors.append(
                f"{where}={num_steps}: the student's σ {s:.6g} (from model.few_step_timesteps) is not on the "
                f"{num_steps}-step teacher grid; use a multiple of {len(m.few_step_timesteps)} with uniform timesteps"
            )
            return
