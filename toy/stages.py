r"""The stages of the Causal Forcing pipeline on toy sequences, one library function each.

Each stage trains a :class:`toy.networks.MaskedFrameMLP` in place through :func:`toy.training.train` with a
loss from :mod:`cf_ref` and returns the loss history; the full track mirrors them on the video DiT with the
same ``cf_ref`` functions. Networks read states ``[B, F, d]`` and per-frame levels ``[B, F]``.

1. :func:`train_base_model` — bidirectional flow matching, one σ per sample (the pretrained video model).
2. :func:`train_ar_teacher` — a block-causal network trained by flow matching with per-block σ, either by
   **teacher forcing** (history = clean data, the network evaluated teacher-forced) or by **diffusion
   forcing** (every frame noised with its own σ, history included).
3. Initialisation of the few-step causal student: :func:`ode_pairs` + :func:`distill_ode` (causal ODE
   pairs from the AR teacher with clean data context, or bidirectional pairs from the base model's joint
   PF-ODE) and :func:`train_cd_student` (causal consistency distillation with an EMA target).
4. :func:`train_dmd` — asymmetric DMD: the generator's samples come from a self-forcing rollout
   (:func:`cf_ref.rollout.few_step_rollout` with random exit steps) or, for CausVid, from one teacher-forced
   step on noised data; the real score is the bidirectional model, the fake score a critic trained with the
   denoising loss ``critic_updates_per_generator`` times per generator update.

Randomness comes from the ``rng`` generator passed to each stage (data, noise, levels, indices, exit
steps), so a stage is reproducible given its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.distill.cd import consistency_distillation_loss, sample_grid_indices
from cf_ref.distill.dmd import (
    critic_loss,
    data_context_samples,
    dmd_generator_loss,
    dmd_sigmas,
    self_rollout_samples,
)
from cf_ref.ema import ema_copy, ema_update
from cf_ref.granularity import Granularity, sample_indices, sample_training_sigmas
from cf_ref.losses import flow_matching_loss
from cf_ref.recipes import Forcing, GeneratorInput, PairTeacher
from cf_ref.rollout import ar_ode_sample, sample_exit_steps
from cf_ref.schedule import interpolate
from cf_ref.solvers import Method, VelocityField, integrate
from toy.data import SequenceData
from toy.networks import FrameNetBlockwise, MaskedFrameMLP
from toy.pairs import PairSet
from toy.students import ContextRegime, TrainedStudent, ode_loss_closure, sample
from toy.training import OptimConfig, make_optimizer, optimizer_step, train


def sample_data(data: SequenceData, n: int, rng: torch.Generator) -> Tensor:
    """``n`` fresh sequences ``[n, F, d]`` in float32 (the toy has unlimited data)."""
    return data.sample(n, rng)[0].float()


def noise_like(x: Tensor, rng: torch.Generator) -> Tensor:
    """Standard normal noise of ``x``'s shape, drawn from ``rng``."""
    return torch.randn(x.shape, generator=rng, dtype=x.dtype)


def train_base_model(
    net: MaskedFrameMLP,
    data: SequenceData,
    optim: OptimConfig,
    batch_size: int,
    shift: float,
    rng: torch.Generator,
) -> list[float]:
    r"""Stage 1: bidirectional flow matching :math:`\lVert v_\theta(x_\sigma,\sigma) - (\varepsilon - x_0)\rVert^2`,
    one σ per sample (all frames share it, as in the pretrained video model), :math:`\sigma = \mathrm{shift}(u)`."""

    def loss(step: int) -> Tensor:
        x0 = sample_data(data, batch_size, rng)
        eps = noise_like(x0, rng)
        sigma = sample_training_sigmas(batch_size, data.num_frames, Granularity.SAMPLE, shift=shift, generator=rng)
        return flow_matching_loss(net.predict(interpolate(x0, eps, sigma), sigma), x0, eps)

    return train(net, loss, optim)


def train_ar_teacher(
    net: MaskedFrameMLP,
    data: SequenceData,
    forcing: Forcing,
    optim: OptimConfig,
    batch_size: int,
    shift: float,
    rng: torch.Generator,
) -> list[float]:
    r"""Stage 2: the AR diffusion teacher, flow matching with one σ per block (``net.config.block_size``).

    Teacher forcing: :math:`v_\theta(x_{\sigma,i}, \sigma_i \mid x_{0,<i})` with the clean data as history
    (teacher-forced evaluation of the block-causal ``net``). Diffusion forcing: every frame, history
    included, is noised with its own level, :math:`v_\theta(x_{\sigma,i}, \sigma_i \mid x_{\sigma,<i})`. At
    sampling time both see clean, self-generated history — the condition teacher forcing trains on.
    """
    b = net.config.block_size

    def loss(step: int) -> Tensor:
        x0 = sample_data(data, batch_size, rng)
        eps = noise_like(x0, rng)
        sigma = sample_training_sigmas(batch_size, data.num_frames, Granularity.BLOCK, b, shift=shift, generator=rng)
        context = x0 if forcing is Forcing.TEACHER else None
        return flow_matching_loss(net.predict(interpolate(x0, eps, sigma), sigma, context=context), x0, eps)

    return train(net, loss, optim)


@torch.no_grad()
def ode_pairs(
    teacher: MaskedFrameMLP, eps: Tensor, grid: Tensor, keep_at: Tensor, context: Tensor | None = None
) -> PairSet:
    r"""Integrate a learned teacher's PF-ODE from ``eps: [P, F, d]`` on ``grid`` (Euler), keeping the states at
    ``keep_at``; returns :class:`toy.pairs.PairSet` (the pair format of ``cf-ref toy run``).

    Bidirectional pairs: ``teacher`` is the base model, ``context=None`` — its joint flow map
    :math:`\Phi(\varepsilon)`. Causal pairs: ``teacher`` is the AR teacher with clean data ``context`` — every
    block integrates :math:`dx_j/d\sigma = v(x_j,\sigma \mid c_{<j})` at once, the per-block flow map
    :math:`\Phi_j(\varepsilon_j; c)`.
    """
    traj = integrate(teacher.velocity_field(context), eps, grid, Method.EULER, keep_at=keep_at)
    teacher_kind = PairTeacher.BIDIRECTIONAL if context is None else PairTeacher.AR
    return PairSet(teacher_kind, traj.states, traj.sigmas.to(eps.dtype), traj.end, eps, context)


def distill_ode(
    student: MaskedFrameMLP,
    pairs: PairSet,
    optim: OptimConfig,
    batch_size: int,
    rng: torch.Generator,
    state_granularity: Granularity = Granularity.SAMPLE,
) -> list[float]:
    r"""Stage 3 (ODE initialisation) of an existing (warm-started) student: the ODE-regression closure of
    ``cf-ref toy run`` (:func:`toy.students.ode_loss_closure`) through :func:`toy.training.train`, one kept state
    per sample or per block (``state_granularity``, :attr:`cf_ref.recipes.RecipeSpec.state_granularity`). The
    student sees the pairs' clean context (causal pairs) or the noisy trajectory frames of earlier blocks
    (bidirectional pairs)."""
    closure = ode_loss_closure(
        student, pairs.states, pairs.sigmas, pairs.target, pairs.context, batch_size, state_granularity, rng
    )
    return train(student, closure, optim)


def train_cd_student(
    student: MaskedFrameMLP,
    teacher: MaskedFrameMLP,
    data: SequenceData,
    grid: Tensor,
    optim: OptimConfig,
    batch_size: int,
    ema_decay: float,
    rng: torch.Generator,
) -> list[float]:
    r"""Stage 3 (Causal Forcing++): consistency distillation along the AR teacher's PF-ODE with clean data context.

    :func:`cf_ref.distill.cd.consistency_distillation_loss` with the teacher's Euler step on ``grid`` and an
    EMA target network (updated after every step with ``ema_decay``); no stored pairs. Student, target and
    teacher all condition on the same clean data (teacher-forced evaluation).
    """
    target = ema_copy(student)
    n_steps = len(grid) - 1

    def loss(step: int) -> Tensor:
        x0 = sample_data(data, batch_size, rng)
        eps = noise_like(x0, rng)
        index = sample_grid_indices(batch_size, data.num_frames, n_steps, generator=rng)
        return consistency_distillation_loss(
            student.velocity_field(x0), target.velocity_field(x0), teacher.velocity_field(x0), x0, eps, grid, index
        )

    return train(student, loss, optim, on_step=lambda step, value: ema_update(target, student, ema_decay))


def few_step_sample(net: MaskedFrameMLP, noise: Tensor, sigmas: Tensor, rng: torch.Generator | None = None) -> Tensor:
    """Inference: the few-step AR rollout of ``net`` on its own clean outputs (:func:`toy.students.sample`,
    ``ContextRegime.CLEAN``) from ``noise: [n, F, d]``; returns ``[n, F, d]``."""
    return sample(TrainedStudent(net, sigmas, []), noise, ContextRegime.CLEAN, rng)


def ar_sample(net: MaskedFrameMLP, noise: Tensor, grid: Tensor) -> Tensor:
    """Multi-step AR sampling of a block-causal diffusion model (clean self-generated history): ``[n, F, d]``."""
    model = FrameNetBlockwise(net)
    with torch.no_grad():
        cache = model.new_cache(noise.shape[0], dtype=noise.dtype)
        return ar_ode_sample(model, noise, net.config.block_size, grid, cache).x0


def joint_sample(net: MaskedFrameMLP, noise: Tensor, grid: Tensor) -> Tensor:
    """Samples of a bidirectional model through its joint PF-ODE (Euler on ``grid``): ``[n, F, d]``."""
    with torch.no_grad():
        return integrate(net.velocity_field(), noise, grid, Method.EULER).end


def generator_samples(
    net: MaskedFrameMLP,
    batch_size: int,
    data: SequenceData,
    sigmas: Tensor,
    generator_input: GeneratorInput,
    rng: torch.Generator,
    context_noise: float = 0.0,
    same_exit_across_blocks: bool = True,
) -> Tensor:
    r"""The generator's training samples ``[B, F, d]`` (with gradient where grad mode is on).

    ``SELF_ROLLOUT`` (Self Forcing): few-step AR rollout from noise on the generator's own outputs; every
    block stops at a random exit step and only that denoising call carries gradient.
    ``DATA_CONTEXT`` (CausVid): each block's input is data noised to a random level of the few-step list and
    the generator predicts :math:`\hat x_0 = x - \sigma v_\theta(x, \sigma \mid x_{0,<j})` in one teacher-forced
    pass on clean data context (no self rollout).
    """
    b, f = net.config.block_size, data.num_frames
    if generator_input is GeneratorInput.SELF_ROLLOUT:
        noise = torch.randn(batch_size, f, data.dim, generator=rng)
        exits = sample_exit_steps(f // b, len(sigmas), same_exit_across_blocks, generator=rng)
        model = FrameNetBlockwise(net)
        cache = model.new_cache(batch_size)
        return self_rollout_samples(model, noise, b, sigmas, cache, exits, context_noise, generator=rng)
    x0 = sample_data(data, batch_size, rng)
    index = sample_indices(batch_size, f, len(sigmas), Granularity.BLOCK, b, generator=rng)
    return data_context_samples(net.velocity_field(x0), x0, noise_like(x0, rng), sigmas, index)


@dataclass(frozen=True)
class DMDSettings:
    """What :func:`train_dmd` needs besides the networks (see :class:`toy.pipeline_config.DMDConfig`)."""

    generator_optim: OptimConfig
    critic_optim: OptimConfig
    batch_size: int
    student_sigmas: Tensor  # [K] few-step list
    shift: float  # DMD / critic levels: clamp(shift(u), t_min/1000, t_max/1000), u ~ U[0, 1) (cf_ref dmd_sigmas)
    generator_input: GeneratorInput = GeneratorInput.SELF_ROLLOUT
    critic_updates_per_generator: int = 5
    t_min: float = 20.0
    t_max: float = 980.0
    context_noise: float = 0.0
    same_exit_across_blocks: bool = True
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if self.critic_updates_per_generator < 1:
            raise ValueError(f"critic_updates_per_generator must be >= 1, got {self.critic_updates_per_generator}")


@dataclass
class DMDResult:
    """Loss histories, DMD diagnostics per generator step, and the model to evaluate (EMA copy if enabled)."""

    generator_losses: list[float]
    critic_losses: list[float]
    grad_norms: list[float]
    final: MaskedFrameMLP


def _dmd_levels(batch_size: int, num_frames: int, s: DMDSettings, rng: torch.Generator) -> Tensor:
    """One level per sample, shifted then clamped as in the published DMD: ``[B, F]``
    (:func:`cf_ref.distill.dmd.dmd_sigmas`)."""
    return dmd_sigmas(batch_size, num_frames, s.shift, s.t_min, s.t_max, generator=rng)


@dataclass
class _Critic:
    """The fake score of DMD with its optimiser; :meth:`update` runs one round of critic updates."""

    net: MaskedFrameMLP
    optim: OptimConfig
    losses: list[float]

    def __post_init__(self) -> None:
        self.optimizer, self.scheduler = make_optimizer(self.net.parameters(), self.optim)
        self.field = self.net.velocity_field()

    def update(self, draw: Callable[[], Tensor], s: DMDSettings, num_frames: int, rng: torch.Generator) -> None:
        """``critic_updates_per_generator`` denoising steps, each on fresh generator samples ``draw()`` (no
        gradient) at a fresh level per sample."""
        for _ in range(s.critic_updates_per_generator):
            with torch.no_grad():
                x = draw()
            value = critic_loss(self.field, x, _dmd_levels(s.batch_size, num_frames, s, rng), noise_like(x, rng))
            optimizer_step(self.net, self.optimizer, value, self.optim.grad_clip)
            self.scheduler.step()
            self.losses.append(float(value.detach()))


def train_dmd(
    generator: MaskedFrameMLP,
    critic: MaskedFrameMLP,
    real_score: VelocityField,
    data: SequenceData,
    settings: DMDSettings,
    rng: torch.Generator,
    on_step: Callable[[int, MaskedFrameMLP], None] | None = None,
) -> DMDResult:
    r"""Stage 4: asymmetric DMD (:func:`cf_ref.distill.dmd.dmd_generator_loss` and
    :func:`cf_ref.distill.dmd.critic_loss`).

    generator: the block-causal few-step student (trained in place); critic: a bidirectional fake score
    (trained in place, usually initialised from the base model); real_score: a frozen velocity field
    ``(x [B, F, d], sigma [B, F]) -> v`` (the base model, or the exact bidirectional teacher as a check).
    Every generator update is preceded by ``critic_updates_per_generator`` critic updates on fresh generator
    samples (no gradient), each at a fresh level per sample. ``on_step(step, model)`` is called after every
    generator update with the model to evaluate (the EMA copy when ``ema_decay`` is set).
    """
    s, f = settings, data.num_frames
    fake = _Critic(critic, s.critic_optim, [])
    ema = ema_copy(generator) if s.ema_decay is not None else None
    grad_norms: list[float] = []

    def draw() -> Tensor:
        return generator_samples(
            generator, s.batch_size, data, s.student_sigmas, s.generator_input, rng, s.context_noise,
            s.same_exit_across_blocks,
        )  # fmt: skip

    def generator_loss(step: int) -> Tensor:
        fake.update(draw, s, f, rng)
        x = draw()
        sigma = _dmd_levels(s.batch_size, f, s, rng)
        loss, diagnostics = dmd_generator_loss(x, real_score, fake.field, sigma, noise_like(x, rng))
        grad_norms.append(diagnostics["dmd_grad_norm"])
        return loss

    def after_step(step: int, value: float) -> None:
        if ema is not None:
            ema_update(ema, generator, s.ema_decay)
        if on_step is not None:
            on_step(step, generator if ema is None else ema)

    history = train(generator, generator_loss, s.generator_optim, on_step=after_step)
    return DMDResult(history, fake.losses, grad_norms, generator if ema is None else ema)
