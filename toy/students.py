r"""Few-step causal students: ODE regression on stored pairs, and their autoregressive samplers.

The student is a :class:`toy.networks.MaskedFrameMLP` — one MLP per frame over the frame tokens its row of
the cf_ref visibility lets it read, the toy analogue of the DiT's masked attention. What it reads follows
the teacher of its pairs (:mod:`toy.pairs`, :data:`STUDENT_MODE`):

* bidirectional pairs → ``BLOCK_CAUSAL``: tokens are the trajectory states of all frames; frame i reads the
  states of frames ≤ i;
* causal pairs (AR teacher) → ``TEACHER_FORCING``: tokens are ``[clean context ; noisy states]``; frame i reads
  its own noisy state and the clean frames < i.

Training minimises :func:`cf_ref.distill.ode.ode_regression_loss`,
:math:`\mathbb E_k \lVert \hat x_0(x_{\sigma_k}) - \Phi(\varepsilon)\rVert^2`, through the shared loop
:func:`toy.training.train`. The state index k is drawn once per sample and shared by all frames, as in Causal
Forcing's ODE regression (``uniform_timestep=True`` in the authors' ``model/ode_regression.py``); per-block
draws (``Granularity.BLOCK``) are available.

Sampling (:func:`sample`) is :func:`cf_ref.rollout.few_step_rollout` with the
:class:`toy.networks.FrameNetBlockwise` adapter, in one of two context regimes (:class:`ContextRegime`); each
student is sampled in the regime it was trained in (:data:`SAMPLING_REGIME`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.distill.ode import ode_regression_loss
from cf_ref.ema import ema_copy, ema_decay_at, ema_update
from cf_ref.granularity import Granularity, sample_indices
from cf_ref.masks import AttentionMode
from cf_ref.recipes import PairTeacher
from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import Prediction
from toy.networks import FrameNetBlockwise, FrameNetConfig, MaskedFrameMLP
from toy.training import OptimConfig, train


class ContextRegime(enum.Enum):
    """What a few-step student reads as the context of frame i while sampling.

    ``CLEAN``: the previous frames' final clean outputs, committed at σ = 0 (Self Forcing / Causal Forcing
    inference, the KV cache of clean frames). ``SAME_LEVEL``: the previous frames' states at the current
    step's σ — all frames are denoised together, step by step, by the block-causal network; this is the
    regime a student trained on bidirectional ODE pairs was trained in (it saw teacher-trajectory states of
    frames ≤ i), and frame i still depends only on frames ≤ i.
    """

    CLEAN = "clean"
    SAME_LEVEL = "same_level"


STUDENT_MODE = {PairTeacher.BIDIRECTIONAL: AttentionMode.BLOCK_CAUSAL, PairTeacher.AR: AttentionMode.TEACHER_FORCING}
"""What the student of each pair teacher's pairs reads (see module doc)."""

SAMPLING_REGIME = {PairTeacher.BIDIRECTIONAL: ContextRegime.SAME_LEVEL, PairTeacher.AR: ContextRegime.CLEAN}
"""The context regime each student was trained in, and is sampled in."""


@dataclass(frozen=True)
class StudentConfig:
    """Network size and optimisation of one ODE-regression run (defaults: the paper preset's)."""

    hidden: int = 128
    depth: int = 3
    sigma_frequencies: int = 2  # a few-step student sees K levels only; two frequencies separate them
    prediction: Prediction = Prediction.X0
    batch_size: int = 512
    optim: OptimConfig = OptimConfig(steps=2500, lr=2e-2, final_lr_fraction=0.01)
    state_granularity: Granularity = Granularity.SAMPLE  # one trajectory index per sample (published), or per block
    state_frequencies: int = 0  # Fourier features of the state (toy.networks); 0 = off
    experts: int = 0  # gated mixture-of-experts head (toy.networks); 0 = a plain linear head
    ema_decay: float = 0.0  # the student is the EMA of its weights over training; 0 = the last weights
    own_step_scales: tuple[float, ...] = ()  # steep features of the query's own noisy state (toy.networks); () = off
    affine_skip: bool = False  # level-modulated affine skip (toy.networks.LevelAffineSkip)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.state_granularity is Granularity.FRAME:
            raise ValueError("state indices are drawn per sample or per block; use Granularity.SAMPLE or BLOCK")

    def network(self, num_frames: int, dim: int, mode: AttentionMode, block_size: int = 1) -> FrameNetConfig:
        """The :class:`FrameNetConfig` of a student reading frames in ``mode``."""
        return FrameNetConfig(
            num_frames=num_frames,
            dim=dim,
            mode=mode,
            block_size=block_size,
            hidden=self.hidden,
            depth=self.depth,
            sigma_frequencies=self.sigma_frequencies,
            prediction=self.prediction,
            state_frequencies=self.state_frequencies,
            experts=self.experts,
            own_step_scales=self.own_step_scales,
            affine_skip=self.affine_skip,
        )


@dataclass
class TrainedStudent:
    """A trained few-step student: the network, its step list ``sigmas [K]`` and the loss history."""

    net: MaskedFrameMLP
    sigmas: Tensor
    history: list[float]

    @property
    def num_steps(self) -> int:
        return len(self.sigmas)


def build_network(config: FrameNetConfig, seed: int) -> MaskedFrameMLP:
    """A freshly initialised :class:`MaskedFrameMLP`, its weights drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MaskedFrameMLP(config)


def _check_pairs(net_config: FrameNetConfig, states: Tensor, sigmas: Tensor, target: Tensor, context: Tensor | None):
    if states.ndim != 4 or states.shape[2:] != (net_config.num_frames, net_config.dim):
        raise ValueError(
            f"states must be [B, K, F={net_config.num_frames}, d={net_config.dim}], got {tuple(states.shape)}"
        )
    if sigmas.shape != states.shape[1:2]:
        raise ValueError(f"sigmas must be [K={states.shape[1]}], got {tuple(sigmas.shape)}")
    if target.shape != states[:, 0].shape:
        raise ValueError(f"target must be [B, F, d] = {tuple(states[:, 0].shape)}, got {tuple(target.shape)}")
    tf = net_config.mode is AttentionMode.TEACHER_FORCING
    if tf and (context is None or context.shape != target.shape):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"a teacher-forcing student needs clean context [B, F, d] = {tuple(target.shape)}, got {got}")
    if not tf and context is not None:
        raise ValueError(f"a {net_config.mode.value} student reads no clean context; pass context=None")


def ode_loss_closure(
    net: MaskedFrameMLP,
    states: Tensor,
    sigmas: Tensor,
    target: Tensor,
    context: Tensor | None,
    batch_size: int,
    state_granularity: Granularity = Granularity.SAMPLE,
    generator: torch.Generator | None = None,
) -> Callable[[int], Tensor]:
    """``loss_fn(step)`` for :func:`toy.training.train`: a random minibatch of pairs and random kept states.

    states ``[P, K, F, d]``, sigmas ``[K]``, target ``[P, F, d]``, context ``[P, F, d]`` or None (all on the
    network's dtype). One state index per sample (``Granularity.SAMPLE``) or per block of the network
    (``Granularity.BLOCK``). The minibatch and state indices come from ``generator``.
    """
    cfg = net.config
    num_pairs, num_states = states.shape[:2]
    batch = min(batch_size, num_pairs)
    sig = sigmas.to(states.dtype)

    def loss_fn(step: int) -> Tensor:
        rows = torch.randint(0, num_pairs, (batch,), generator=generator)
        index = sample_indices(batch, cfg.num_frames, num_states, state_granularity, cfg.block_size, generator)
        ctx = None if context is None else context[rows]
        return ode_regression_loss(net.velocity_field(ctx), states[rows], sig, target[rows], index)

    return loss_fn


def train_ode_student(
    net_config: FrameNetConfig,
    states: Tensor,
    sigmas: Tensor,
    target: Tensor,
    context: Tensor | None = None,
    optim: OptimConfig | None = None,
    batch_size: int = 512,
    seed: int = 0,
    state_granularity: Granularity = Granularity.SAMPLE,
    on_step: Callable[[int, float], None] | None = None,
    ema_decay: float = 0.0,
) -> TrainedStudent:
    r"""Train a few-step causal student by ODE regression on pairs.

    states: ``[P, K, F, d]`` teacher-trajectory states at ``sigmas: [K]`` (decreasing, the student's step
    list); target: ``[P, F, d]`` the teacher's end points; context: ``[P, F, d]`` clean frames, required iff
    ``net_config.mode`` is ``TEACHER_FORCING``. Pairs are cast to float32. ``seed`` fixes the initial weights,
    the minibatches and the state indices (one per sample or per block, ``state_granularity``). With
    ``ema_decay`` μ > 0 the returned network is the exponential moving average
    :math:`\bar\theta_t = \mu\bar\theta_{t-1} + (1-\mu)\theta_t` of the weights (a copy at the first step).
    Returns the network (in eval mode) with its step list and losses.
    """
    _check_pairs(net_config, states, sigmas, target, context)
    optim = OptimConfig() if optim is None else optim
    net = build_network(net_config, seed)
    gen = torch.Generator().manual_seed(seed)
    ctx = None if context is None else context.float()
    loss_fn = ode_loss_closure(net, states.float(), sigmas, target.float(), ctx, batch_size, state_granularity, gen)
    if ema_decay > 0:
        average, on_step = _with_ema(net, ema_decay, on_step)
    history = train(net, loss_fn, optim, on_step)
    return TrainedStudent(average.eval() if ema_decay > 0 else net, sigmas.detach().clone(), history)


def _with_ema(net: MaskedFrameMLP, decay: float, on_step: Callable[[int, float], None] | None):
    """An EMA copy of ``net`` and an ``on_step`` hook that updates it after every optimiser step (then calls ``on_step``)."""
    average = ema_copy(net)

    def hook(step: int, loss: float) -> None:
        ema_update(average, net, ema_decay_at(step, decay))
        if on_step is not None:
            on_step(step, loss)

    return average, hook


@torch.no_grad()
def predict_x0(net: MaskedFrameMLP, states: Tensor, sigma: float | Tensor, context: Tensor | None = None) -> Tensor:
    """The student's one-step estimate :math:`\\hat x_0` at ``states: [B, F, d]`` (all frames at level ``sigma``,
    scalar or ``[B, F]``); float32 in, ``[B, F, d]`` out."""
    x = states.float()
    sig = torch.as_tensor(sigma, dtype=torch.float32)
    ctx = None if context is None else context.float()
    return net.predict(x, sig, ctx, target=Prediction.X0)


@torch.no_grad()
def sample(
    student: TrainedStudent,
    noise: Tensor,
    regime: ContextRegime = ContextRegime.CLEAN,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Few-step autoregressive samples ``[B, F, d]`` from ``noise: [B, F, d]`` (see :class:`ContextRegime`).

    ``CLEAN`` rolls out block by block, committing each block's clean output; ``SAME_LEVEL`` (block-causal
    students only) runs the K steps on all frames at once, which — the network being block-causal — is the
    same as streaming frame by frame with each frame's per-step states kept as context.
    Re-noising between steps draws fresh noise from ``generator``.
    """
    net = student.net
    cfg = net.config
    if regime is ContextRegime.SAME_LEVEL and cfg.mode is not AttentionMode.BLOCK_CAUSAL:
        raise ValueError(f"the same-level regime needs a block-causal student, this one is {cfg.mode.value}")
    adapter = FrameNetBlockwise(net)
    x = noise.float()
    cache = adapter.new_cache(x.shape[0], dtype=x.dtype)
    block = cfg.block_size if regime is ContextRegime.CLEAN else cfg.num_frames
    return few_step_rollout(adapter, x, block, student.sigmas.float(), cache, generator=generator).x0
