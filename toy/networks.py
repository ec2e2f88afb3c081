r"""The toy track's network: a masked per-frame MLP that mirrors the video DiT's attention layout.

Inputs are a sequence of frame tokens with a per-token noise level; which tokens frame i may read is a
row of a frame visibility from :mod:`cf_ref.masks` — the same definition the DiT's attention uses:

* ``BIDIRECTIONAL`` / ``BLOCK_CAUSAL``: tokens are the F noisy frames (a committed frame is a token at
  σ = 0 or at its context-noise level);
* ``TEACHER_FORCING``: tokens are ``[clean ; noisy]`` (2F), clean tokens at σ = 0, and only the noisy
  half produces outputs (rows ``F:`` of the teacher-forcing visibility).

A ``BLOCK_CAUSAL`` network also accepts clean ``context``: *teacher-forced evaluation* of the same
weights. Query i then reads the rows ``F:`` of the teacher-forcing visibility over ``[clean ; noisy]``, and
the clean and the noisy slot of each frame are folded into that frame's one input slot (query i never sees
both: clean frames of earlier blocks, noisy frames of its own block). This is how one causal DiT is trained
on all frames at once with clean history; it equals running the network block by block on a cache of
clean context frames (:class:`FrameNetBlockwise`), so one block-causal network can be AR teacher,
few-step student and DMD generator.

For query frame i the network reads the masked token features
:math:`u_i = \mathrm{vec}\big(\mathrm{vis}[i,j]\cdot[x_j, \phi(\sigma_j)]\big)_j` and applies its own MLP
(weights indexed by i; all frames run in one grouped matmul). Invisible tokens enter as zeros, so
causality holds by construction, exactly like a masked attention layer.
:math:`\phi(\sigma) = [\sigma, \sin(\pi k\sigma), \cos(\pi k\sigma)]_{k=1..n}`.

Optional parts (off by default, so the default network and its initial weights are unchanged):

* **Fourier features of the state** (``state_frequencies = m``): each token also carries
  :math:`\psi(x) = [\sin(2^{k-1}\langle u_p, x\rangle), \cos(2^{k-1}\langle u_p, x\rangle)]_{k=1..m,\,p}` along
  the coordinate axes and their pairwise diagonals :math:`u_p` (:func:`feature_directions`), so that the first
  layer can build steep functions of the state (a flow map that is nearly a step) without huge weights;
* **a gated mixture-of-experts head** (``experts = E``): the last layer is replaced by E linear experts
  :math:`y_e = h W_e + b_e` on the last hidden layer h, mixed by a softmax gate that is *linear in the network's
  input* u (the masked token features) with a learned temperature,
  :math:`\mathrm{out} = \sum_e \mathrm{softmax}_e(e^{\tau}(u G + c))\, y_e` (one τ per frame, starting at 0).
  A large τ makes the gate a sharp switch between regions bounded by hyperplanes of the input (a Voronoi-like
  partition) — a piecewise-smooth map such as the flow map of a well-separated mixture, which picks a mode from
  the noise and then moves within it; the sharpness is one scalar to learn instead of large weights through the
  whole MLP. With equal experts it is a plain linear head;
* **steep features of the query's own state** (``own_step_scales = (a_1, …)``): query i's input also carries
  :math:`\chi(x_i) = [\tanh(a_k\langle u_p, x_i\rangle)]_{k,p}` of its own noisy token only (the context tokens enter
  raw), along the directions :math:`u_p` of :func:`feature_directions`. With scales up to a few hundred the first
  layer holds transitions a few thousandths wide — the flow map of a well-separated mixture is a step in the noise
  that decides the mode — without the weights having to grow there (with Adam a weight moves about the learning
  rate a step, so the slope of a raw input grows slowly; a pre-scaled input moves its slope a times faster). The
  steps are centred on the origin along those directions: where the symmetric mixtures' first frame switches mode;
* **a level-modulated affine skip** (``affine_skip``, :class:`LevelAffineSkip`): the output gains
  :math:`\sum_b \beta_b(\sigma_i)\,[z_i, 1] W_{i,b}` with :math:`z_i = \mathrm{vec}(\mathrm{vis}[i,j]\,x_j)_j` the
  visible token values and :math:`\beta = [1, \phi(\sigma)]`. At K ≤ 2 + 2n levels it represents any affine map of the
  visible tokens per level — exactly the conditional expectation of a Gaussian sequence,
  :math:`\mu + A_\sigma(x - (1-\sigma)\mu)` (:func:`toy.closed_form.causal_regression_matrix`), and the AR
  flow map of a Gaussian — so the MLP only learns the non-linear remainder. Zero at initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from cf_ref.masks import AttentionMode, frame_visibility, teacher_forcing_visibility
from cf_ref.schedule import Prediction, convert_prediction, sigma_per_frame


@dataclass(frozen=True)
class FrameNetConfig:
    num_frames: int
    dim: int
    mode: AttentionMode = AttentionMode.BLOCK_CAUSAL
    block_size: int = 1
    hidden: int = 128
    depth: int = 3
    sigma_frequencies: int = 6
    prediction: Prediction = Prediction.VELOCITY
    state_frequencies: int = 0  # Fourier features of the state (see module doc); 0 = off
    experts: int = 0  # gated mixture-of-experts head with this many experts; 0 = a plain linear head
    own_step_scales: tuple[float, ...] = ()  # steep tanh features of the query's own noisy state; () = off
    affine_skip: bool = False  # the level-modulated affine skip (LevelAffineSkip); False = off

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.dim < 1 or self.hidden < 1 or self.depth < 1:
            raise ValueError(f"num_frames, dim, hidden, depth must be >= 1: {self}")
        if self.state_frequencies < 0 or self.experts < 0 or self.experts == 1:
            raise ValueError(f"state_frequencies must be >= 0 and experts 0 (off) or >= 2: {self}")
        if any(a <= 0 for a in self.own_step_scales):
            raise ValueError(f"own_step_scales must be positive, got {self.own_step_scales}")
        if self.num_frames % self.block_size:
            raise ValueError(f"block size {self.block_size} does not divide num_frames {self.num_frames}")


class GroupedLinear(nn.Module):
    """G independent linear maps :math:`y_g = x_g W_g + b_g` in one batched matmul: ``[B, G, I] -> [B, G, O]``."""

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor, groups: slice = slice(None)) -> Tensor:
        """``x: [B, G', I]`` for the groups ``groups`` (default all) -> ``[B, G', O]``."""
        return torch.einsum("bgi,gio->bgo", x, self.weight[groups]) + self.bias[groups]


def sigma_features(sigma: Tensor, frequencies: int) -> Tensor:
    """:math:`\\phi(\\sigma)`: ``[...] -> [..., 1 + 2·frequencies]``."""
    k = torch.arange(1, frequencies + 1, device=sigma.device, dtype=sigma.dtype) * math.pi
    arg = sigma[..., None] * k
    return torch.cat([sigma[..., None], torch.sin(arg), torch.cos(arg)], dim=-1)


def feature_directions(dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit directions ``[P, dim]`` of the state features: the coordinate axes and, for ``dim`` ≥ 2, every pairwise
    diagonal :math:`(e_a \\pm e_b)/\\sqrt 2` (P = dim²)."""
    eye = torch.eye(dim, dtype=dtype)
    diagonals = [
        (eye[a] + sign * eye[b]) / math.sqrt(2) for a in range(dim) for b in range(a + 1, dim) for sign in (1, -1)
    ]
    return torch.stack([*eye, *diagonals])


def state_features(x: Tensor, frequencies: int) -> Tensor:
    """:math:`\\psi(x)`: ``[..., d] -> [..., 2·frequencies·d²]``, sines then cosines of :math:`2^{k-1}\\langle u_p, x\\rangle`
    for the directions :math:`u_p` of :func:`feature_directions`."""
    if frequencies == 0:
        return x.new_zeros(*x.shape[:-1], 0)
    omega = 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype)  # [m]
    proj = x @ feature_directions(x.shape[-1], x.dtype).to(x.device).T  # [..., P]
    arg = rearrange(proj[..., :, None] * omega, "... p m -> ... (p m)")
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


def step_features(x: Tensor, scales: tuple[float, ...]) -> Tensor:
    """:math:`\\chi(x)`: ``[..., d] -> [..., len(scales)·d²]``, :math:`\\tanh(a_k\\langle u_p, x\\rangle)` for every scale
    :math:`a_k` and direction :math:`u_p` of :func:`feature_directions` (scale-major)."""
    a = torch.tensor(scales, device=x.device, dtype=x.dtype)  # [S]
    proj = x @ feature_directions(x.shape[-1], x.dtype).to(x.device).T  # [..., P]
    return rearrange(torch.tanh(a[:, None] * proj[..., None, :]), "... s p -> ... (s p)")


class GatedExpertsHead(nn.Module):
    """The mixture-of-experts head (see module doc): hidden ``h: [B, G', H]`` and gate input ``u: [B, G', I]``
    -> ``[B, G', d]`` for the groups ``groups``."""

    def __init__(self, groups: int, hidden: int, dim: int, experts: int, gate_features: int):
        super().__init__()
        self.dim, self.experts = dim, experts
        self.expert = GroupedLinear(groups, hidden, experts * dim)
        self.gate = GroupedLinear(groups, gate_features, experts)
        self.log_temperature = nn.Parameter(torch.zeros(groups))

    def gate_weights(self, u: Tensor, groups: slice = slice(None)) -> Tensor:
        """Softmax gate ``[B, G', E]`` from the gate input ``u: [B, G', I]``."""
        scale = self.log_temperature[groups].exp()[None, :, None]
        return torch.softmax(self.gate(u, groups) * scale, dim=-1)

    def forward(self, h: Tensor, u: Tensor, groups: slice = slice(None)) -> Tensor:
        y = rearrange(self.expert(h, groups), "b g (e d) -> b g e d", e=self.experts)
        return torch.einsum("bge,bged->bgd", self.gate_weights(u, groups), y)


class LevelAffineSkip(nn.Module):
    r"""The level-modulated affine skip (see module doc): visible token values ``z: [B, G', I]`` and the query
    levels ``sigma: [B, G']`` -> ``[B, G', d]``, :math:`\sum_b \beta_b(\sigma)\,[z, 1]\,W_b` for the groups ``groups``.

    :math:`\beta(\sigma) = [1, \phi(\sigma)]` (:func:`sigma_features`, n frequencies: 2 + 2n functions); the
    weights start at zero.
    """

    def __init__(self, groups: int, in_features: int, dim: int, frequencies: int):
        super().__init__()
        self.frequencies = frequencies
        self.linear = GroupedLinear(groups, (in_features + 1) * (2 + 2 * frequencies), dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def features(self, z: Tensor, sigma: Tensor) -> Tensor:
        r""":math:`[z, 1] \otimes \beta(\sigma)`: ``[B, G', (I + 1)·(2 + 2n)]``, the inputs the skip is linear in."""
        basis = torch.cat([torch.ones_like(sigma)[..., None], sigma_features(sigma, self.frequencies)], dim=-1)
        z1 = torch.cat([z, torch.ones_like(z[..., :1])], dim=-1)
        return rearrange(z1[..., :, None] * basis[..., None, :], "b g i k -> b g (i k)")

    def forward(self, z: Tensor, sigma: Tensor, groups: slice = slice(None)) -> Tensor:
        return self.linear(self.features(z, sigma), groups)


class MaskedFrameMLP(nn.Module):
    """Per-frame MLPs over visible frame tokens (see module doc)."""

    def __init__(self, config: FrameNetConfig):
        super().__init__()
        self.config = config
        f = config.num_frames
        vis = frame_visibility(config.mode, f, config.block_size)
        rows = vis[f:] if config.mode is AttentionMode.TEACHER_FORCING else vis  # queries = noisy frames
        self.register_buffer("visibility", rows.clone(), persistent=False)  # [F, L]
        if config.mode is AttentionMode.BLOCK_CAUSAL:  # teacher-forced evaluation: [F, 2F] over [clean ; noisy]
            forced = teacher_forcing_visibility(f, config.block_size)[f:]
            self.register_buffer("forced_visibility", forced.clone(), persistent=False)
        token = config.dim + 2 * config.state_frequencies * config.dim**2 + 1 + 2 * config.sigma_frequencies
        own = len(config.own_step_scales) * config.dim**2  # steep features of the query's own noisy state
        width = [rows.shape[1] * token + own] + [config.hidden] * config.depth + [config.dim]
        self.layers = nn.ModuleList(GroupedLinear(f, a, b) for a, b in zip(width[:-1], width[1:]))
        if config.experts:  # the gated head replaces the last linear layer
            self.layers[-1] = GatedExpertsHead(f, config.hidden, config.dim, config.experts, width[0])
        slots = f if config.mode is AttentionMode.BLOCK_CAUSAL else rows.shape[1]  # folded slots per query
        if config.affine_skip:
            self.skip = LevelAffineSkip(f, slots * config.dim, config.dim, config.sigma_frequencies)

    @property
    def teacher_forcing(self) -> bool:
        return self.config.mode is AttentionMode.TEACHER_FORCING

    def forward(self, x: Tensor, sigma: Tensor, context: Tensor | None = None, frames: slice = slice(None)) -> Tensor:
        """Raw output (in ``config.prediction``) for noisy frames ``x: [B, F, d]`` at levels ``sigma: [B, F]``.

        ``context: [B, F, d]`` clean frames is required in teacher-forcing mode, optional in block-causal mode
        (teacher-forced evaluation, see module doc) and refused in bidirectional mode. ``frames`` selects the
        query frames to compute (default all): the output is ``[B, F', d]`` for those frames only, which
        is what a block-by-block rollout needs.
        """
        c = self.config
        if x.ndim != 3 or x.shape[1:] != (c.num_frames, c.dim):
            raise ValueError(f"x must be [B, {c.num_frames}, {c.dim}], got {tuple(x.shape)}")
        sigma = sigma_per_frame(sigma, x)
        if self.teacher_forcing and (context is None or context.shape != x.shape):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"teacher-forcing mode needs clean context of shape {tuple(x.shape)}, got {got}")
        if context is None:
            tokens, levels, vis = x, sigma, self.visibility
        else:
            if c.mode is AttentionMode.BIDIRECTIONAL:
                raise ValueError(f"{c.mode.value} mode takes no clean context")
            if context.shape != x.shape:
                raise ValueError(f"clean context must have the shape of x {tuple(x.shape)}, got {tuple(context.shape)}")
            tokens = torch.cat([context, x], dim=1)
            levels = torch.cat([torch.zeros_like(sigma), sigma], dim=1)
            vis = self.visibility if self.teacher_forcing else self.forced_visibility
        feats = [tokens, state_features(tokens, c.state_frequencies), sigma_features(levels, c.sigma_frequencies)]
        masked = self._masked(torch.cat(feats, dim=-1), vis[frames], folded=context is not None)  # [B, F', L, token]
        h = u = torch.cat(
            [rearrange(masked, "b f l t -> b f (l t)"), step_features(x[:, frames], c.own_step_scales)], -1
        )
        for layer in self.layers[:-1]:
            h = torch.nn.functional.silu(layer(h, frames))
        out = self.layers[-1](h, u, frames) if c.experts else self.layers[-1](h, frames)
        if c.affine_skip:  # the visible token values, folded like the features
            z = rearrange(self._masked(tokens, vis[frames], folded=context is not None), "b f l t -> b f (l t)")
            out = out + self.skip(z, sigma[:, frames], frames)
        return out

    def _masked(self, feats: Tensor, vis: Tensor, folded: bool) -> Tensor:
        """Token features ``[B, L, t]`` under query rows ``vis: [F', L]`` -> ``[B, F', L', t]``; with clean context in
        block-causal mode (``folded`` and not teacher forcing) each frame's [clean ; noisy] slots are summed (L' = F)."""
        masked = feats[:, None] * vis[None, :, :, None].to(feats.dtype)
        if folded and not self.teacher_forcing:
            masked = rearrange(masked, "b f (two l) t -> b f two l t", two=2).sum(dim=2)
        return masked

    def predict(
        self,
        x: Tensor,
        sigma: Tensor,
        context: Tensor | None = None,
        target: Prediction = Prediction.VELOCITY,
        frames: slice = slice(None),
    ) -> Tensor:
        """Output (for the query ``frames``) converted to ``target`` through :func:`cf_ref.schedule.convert_prediction`."""
        sigma = sigma_per_frame(sigma, x)
        out = self(x, sigma, context, frames)
        return convert_prediction(x[:, frames], out, sigma[:, frames], self.config.prediction, target)

    def velocity_field(self, context: Tensor | None = None):
        """``(x [B, F, d], sigma) -> v``: a :data:`cf_ref.solvers.VelocityField` with ``context`` closed over."""

        def field(x: Tensor, sigma: Tensor) -> Tensor:
            return self.predict(x, sigma, context)

        return field


def with_mode(net: MaskedFrameMLP, mode: AttentionMode) -> MaskedFrameMLP:
    """A new network with a copy of ``net``'s weights under another attention mode.

    Bidirectional and block-causal networks share their weight shapes (the toy analogue of building the
    causal DiT from the bidirectional checkpoint); a teacher-forcing network has twice the input slots, so
    converting to or from it raises.
    """
    if (mode is AttentionMode.TEACHER_FORCING) != net.teacher_forcing:
        raise ValueError(f"cannot convert a {net.config.mode.value} network to {mode.value}: the input layouts differ")
    out = MaskedFrameMLP(replace(net.config, mode=mode))
    out.load_state_dict(net.state_dict())
    return out.to(next(net.parameters()).device)


class FrameNetBlockwise:
    """:class:`cf_ref.rollout.BlockwiseModel` adapter: the cache holds committed frames and their levels.

    Teacher-forcing networks read committed frames as clean context (σ must be 0); block-causal networks
    read them as tokens at their committed level (0, or the context noise). Uncommitted frames are zeros —
    the visibility hides them, so their value never matters.
    """

    def __init__(self, net: MaskedFrameMLP):
        self.net = net

    def new_cache(self, batch_size: int, device: Any = None, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """An empty cache: frames ``x: [B, F, d]`` and levels ``sigma: [B, F]``, all zeros (nothing committed)."""
        c = self.net.config
        return {
            "x": torch.zeros(batch_size, c.num_frames, c.dim, device=device, dtype=dtype),
            "sigma": torch.zeros(batch_size, c.num_frames, device=device, dtype=dtype),
        }

    def _span(self, block: int, width: int) -> slice:
        frames = self.net.config.num_frames
        if width < 1 or block < 0 or (block + 1) * width > frames:
            raise ValueError(f"block {block} of {width} frame(s) lies outside the network's {frames} frames")
        return slice(block * width, (block + 1) * width)

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: dict[str, Tensor]) -> Tensor:
        span = self._span(block, x.shape[1])
        if self.net.teacher_forcing:
            noisy = torch.zeros_like(cache["x"])
            levels = torch.ones_like(cache["sigma"])
            noisy[:, span], levels[:, span] = x, sigma
            return self.net.predict(noisy, levels, context=cache["x"], frames=span)
        tokens, levels = cache["x"].clone(), cache["sigma"].clone()
        tokens[:, span], levels[:, span] = x, sigma
        return self.net.predict(tokens, levels, frames=span)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.net.teacher_forcing and bool((sigma != 0).any()):
            raise ValueError("a teacher-forcing network reads clean context: commit at σ = 0")
        span = self._span(block, x.shape[1])
        x_all, s_all = cache["x"].clone(), cache["sigma"].clone()
        x_all[:, span], s_all[:, span] = x, sigma
        return {"x": x_all, "sigma": s_all}
