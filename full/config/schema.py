"""The configuration schema of the full track: one dataclass per section, the published defaults in one place.

Every default is the published setting (the authors' configs; the values and their sources are listed in
``docs/full.md``, section "Published setting") unless its comment says otherwise. The recipe vocabulary
(:mod:`cf_ref.recipes`) and the few-step schedule (:class:`cf_ref.schedule.FewStepSchedule`, the ``schedule``
section) are cf_ref's own types; the recipe-dependent defaults are those of the default recipe, causal-forcing
(:func:`full.recipes.recipe_settings` sets the chosen recipe's).
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from cf_ref.ema import EmaFirstUpdate
from cf_ref.granularity import Granularity
from cf_ref.losses import LossWeighting
from cf_ref.recipes import RECIPES, Forcing, GeneratorInput, PairTeacher, Recipe
from cf_ref.rollout import CacheGradient
from cf_ref.schedule import FewStepSchedule

DEFAULT_RECIPE = Recipe.CAUSAL_FORCING
_DEFAULT_SPEC = RECIPES[DEFAULT_RECIPE]

PATH = {"path": True}
"""Field metadata of a setting that names a file or folder: checked before a run starts (:mod:`full.preflight`),
stored relative to the run when inside it (:func:`full.config.save_config`), free to change on ``--resume``."""
UNBOUNDED = {"inf": True}
"""Field metadata of a float setting for which ``inf`` means "no limit" (every other float must be finite)."""


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
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)


class TimeDtype(enum.Enum):
    """dtype of the timesteps the CD stage tells its networks (:class:`cf_ref.distill.cd.CDTimes`)."""

    FLOAT32 = "float32"  # exact σ_n (the method)
    BFLOAT16 = "bfloat16"  # the authors' CD trainer: bf16 timesteps and step, x̂0 on their 1000-step grid

    @property
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)


class ModelPreset(enum.Enum):
    """Models built in code instead of loaded from a folder."""

    TINY = "tiny"  # a few layers, small dims, trained on the synthetic set first (full.stages.base): offline CPU
    TINY_TI2V_5B = "tiny-ti2v-5b"  # the same, Wan2.2-TI2V-5B-shaped (48 latent channels; full.tiny.TINY_TI2V_5B)


SIGMA_SAMPLERS = ("uniform", "logit-normal", "mix")


@dataclass
class TinyBaseConfig:
    """The tiny preset's stand-in for the pretrained model: a tiny random DiT trained bidirectionally on the
    synthetic set (flow matching) before the recipe starts. Not from the paper; only used with preset tiny."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 2.0e-3
    caption_dropout: float = 0.1  # probability of training on the negative prompt (unconditional) instead
    videos: int = 64  # synthetic latent videos generated for the preset
    warmup: int = 0  # linear learning-rate warm-up over this many steps (full.stages.base.learning_rate)
    cosine: bool = False  # then a cosine decay to 0 at the last step (False: constant)
    ema_decay: float = 0.0  # > 0: keep an EMA of the weights with this decay and save it as the base model
    # training noise levels (full.stages.base.sample_base_sigmas): uniform, logit-normal or mix (half shifted)
    sigma_sampler: str = "uniform"
    sigma_shift: float | None = None  # the sampler's shift; None: schedule.shift


@dataclass
class ModelConfig:
    """The bidirectional base model (Wan2.1-T2V-1.3B in diffusers layout) and the AR block structure."""

    # folder of the base transformer (``from_pretrained``); None with a preset
    path: str | None = field(default=None, metadata=PATH)
    preset: ModelPreset | None = None
    tiny_base: TinyBaseConfig = field(default_factory=TinyBaseConfig)
    block_size: int = 3  # latent frames per AR block: 3 chunk-wise (published default), 1 frame-wise


@dataclass
class VideoConfig:
    """Latent video shape (Wan VAE: 4× temporal, 8×8 spatial; 480×832, 81 frames → 21×60×104)."""

    latent_frames: int = 21
    latent_height: int = 60
    latent_width: int = 104


@dataclass
class DataConfig:
    """Prepared sets (``cf-ref full prepare``); each stage says which one it needs."""

    # (latents, text) set: ar-diffusion, ode-pairs, cd, dmd with generator_input=data
    latents: str | None = field(default=None, metadata=PATH)
    # text-only set for DMD (falls back to the latent set's texts when None)
    prompts: str | None = field(default=None, metadata=PATH)


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
    # AutoencoderKLWan folder (or a Wan folder with vae/) to decode samples; None = previews
    vae: str | None = field(default=None, metadata=PATH)


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
    max_grad_norm: float = field(default=10.0, metadata=UNBOUNDED)  # inf: no clipping


@dataclass
class ARDiffusionConfig:
    """Stage 1: AR diffusion teacher trained from the bidirectional model's weights."""

    init: str | None = field(default=None, metadata=PATH)  # weights to start from; None = the base model
    forcing: Forcing = Forcing.TEACHER
    granularity: Granularity = Granularity.BLOCK  # one σ per block
    weighting: LossWeighting = LossWeighting.BELL  # the schedule's training weight
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=2000))  # README: "no less than 2K steps"
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class ODEPairsConfig:
    """Stage 2: PF-ODE trajectories on the schedule's grid, stored at the few-step σ list plus the end point."""

    teacher: PairTeacher = _DEFAULT_SPEC.pair_teacher
    # weights to start from; None = the AR teacher of the run (teacher=ar) or the base model (bidirectional)
    init: str | None = field(default=None, metadata=PATH)
    guidance_scale: float = 6.0
    precision: Precision = Precision.FP32  # the published curation runs the teacher in fp32 (bf16: faster)
    storage: StorageDtype = StorageDtype.FLOAT32  # of the stored states (the authors store fp16: half the disk)
    batch_size: int = 1  # videos per teacher call and process
    shard_size: int = 16  # pairs per safetensors shard; not from the paper
    max_pairs: int | None = None  # None = one pair per latent video


@dataclass
class ODEConfig:
    """Stage 3a: ODE regression of the few-step causal student."""

    # weights to start from; None = the AR teacher of the run if the recipe trains one, else the base model
    init: str | None = field(default=None, metadata=PATH)
    pairs: str | None = field(default=None, metadata=PATH)  # ODE-pair set; None = the run's ode-pairs output
    # trajectory states drawn per video (causal ODE) or per block (self-forcing / causvid): the recipe's
    index_granularity: Granularity = _DEFAULT_SPEC.state_granularity
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000))  # README: "no less than 1K steps"
    optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(betas=(0.9, 0.999)))


@dataclass
class CDConfig:
    """Stage 3b: causal consistency distillation (Causal Forcing++) on the schedule's grid."""

    # weights to start from; None = the run's AR teacher (student, EMA target and teacher alike)
    init: str | None = field(default=None, metadata=PATH)
    guidance_scale: float = 3.0  # standard CFG on the teacher's velocity, as model/naive_consistency.py
    ema_decay: float = 0.99  # of the target network (and the exported EMA generator)
    # how the EMA target starts: copy the student at the first update (cf-ref) or blend from the first update on,
    # keeping 0.99^k of the initial weights after k steps (the authors' EMA_FSDP in trainer/naive_cd.py)
    ema_first_update: EmaFirstUpdate = EmaFirstUpdate.COPY
    # timesteps told to the networks: exact float32 σ_n, or bfloat16 as the authors' model/naive_consistency.py
    # (bf16 t and teacher step, x̂0 on their 1000-step grid; docs/full.md "Where we differ")
    time_dtype: TimeDtype = TimeDtype.FLOAT32
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=3000))  # README: "no less than 3K steps"
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class DMDConfig:
    """Stage 4: asymmetric DMD with self-forcing rollout (or CausVid's data context)."""

    # weights to start from; None = the run's ODE, CD or AR-teacher output (generator)
    init: str | None = field(default=None, metadata=PATH)
    # bidirectional teacher folder (published: Wan2.1-T2V-14B); None = model.path
    real_score_path: str | None = field(default=None, metadata=PATH)
    # CFG w on the real score, v_u + w(v_c - v_u) as everywhere in cf-ref. The authors' guidance_scale 3.0 is applied
    # as x0_c + 3(x0_c - x0_u) (model/dmd.py of Self-/Causal-Forcing), i.e. w = 1 + 3 = 4.
    guidance_scale: float = 4.0
    critic_updates_per_generator: int = 5  # dfake_gen_update_ratio
    generator_input: GeneratorInput = _DEFAULT_SPEC.generator_input  # self rollout or data context: the recipe's
    same_exit_across_blocks: bool = True  # one random exit step shared by all blocks
    # Causal Forcing++'s 1-/2-step students: the rollout's first block on the uniform K-step list (the authors'
    # denoising_step_list_first_chunk: 4 → 1000/750/500/250), its exit step drawn on its own; null = the student's list
    first_block_steps: int | None = None
    # frame-wise / chunk-wise image-to-video training: frame 0 of every rollout is the latent set's first frame,
    # clean at σ = 0 in every call (cf_ref.first_frame), never generated; needs data.latents. Not in the authors' code
    image_to_video: bool = False
    context_noise: float = 0.0  # σ at which finished blocks are committed to the KV cache
    # gradient the committed K/V carry: none (the method) or the authors' leak through their in-place cache
    cache_gradient: CacheGradient = CacheGradient.NONE
    # the rollout's KV cache: dynamic (grows by concatenation) or static (preallocated, fixed shapes; same gradients)
    cache: str = "dynamic"
    # shift of the 1000-step grid on which the scores' x̂0 is read; null = the exact σ (the method). The authors'
    # real / fake score wrappers use 8.0 (WanDiffusionWrapper's default), the noise the model's 5.0
    score_shift: float | None = None
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

    recipe: Recipe = DEFAULT_RECIPE
    out: str = field(default="runs/causal-forcing", metadata=PATH)
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    # the student's few-step list (timesteps before the shift), Wan's shift and the teacher's PF-ODE grid
    # (ode_steps: ODE pairs, CD, AR-teacher samples); its validation is cf_ref's
    schedule: FewStepSchedule = field(default_factory=FewStepSchedule)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ar_diffusion: ARDiffusionConfig = field(default_factory=ARDiffusionConfig)
    ode_pairs: ODEPairsConfig = field(default_factory=ODEPairsConfig)
    ode: ODEConfig = field(default_factory=ODEConfig)
    cd: CDConfig = field(default_factory=CDConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)


def leaf_settings(cls: type = RunConfig, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every leaf setting of the schema (sections recursed into): ``(dotted name, field, annotated type)``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaf_settings(hints[f.name], f"{name}.")
        else:
            yield name, f, hints[f.name]


def get_setting(config: Any, name: str) -> Any:
    """The value of dotted setting ``name`` in a configuration object."""
    for part in name.split("."):
        config = getattr(config, part)
    return config
