r"""First-frame conditioning of a block-by-block rollout: frame 0 is a given image, clean, at level 0.

Text-image-to-video the way Wan2.2-TI2V-5B does it (the Wan2.2 repository's ``wan/textimage2video.py``:
``masks_like`` / ``mask2``; diffusers' ``WanImageToVideoPipeline`` with ``expand_timesteps``): latent frame 0 *is*
the encoded image. In every denoising call it is fed clean, with timestep 0 for its tokens, while the other
frames are at the step's level; it is never noised and comes out unchanged.

For a causal model that touches block 0 only. :class:`FirstFrameConditioned` wraps any
:class:`cf_ref.rollout.BlockwiseModel`: in block 0 it replaces frame 0 of the input by the image ``c`` at
σ = 0 (frames ``1 … b-1`` at their own levels) and returns for frame 0 the velocity whose step estimate is the
image,

.. math::  \hat x_0 = x - \sigma v_0 = c \iff v_0 = (x - c) / \sigma ,

so :func:`cf_ref.rollout.few_step_rollout` (or :func:`~cf_ref.rollout.ar_ode_sample`) keeps frame 0 equal to
the image (up to the rounding of ``x − σ(x − c)/σ``) through every step, re-noising included, with no gradient
through it; the commit writes the image itself, clean. With ``b = 1`` block 0 is the image alone and the inner model is not called for it: exactly the
frame-wise model's image prefill. Shapes: image ``[B, 1, *S]``, blocks ``x: [B, b, *S]``, ``sigma: [B, b]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FirstFrameConditioned:
    """A :class:`cf_ref.rollout.BlockwiseModel` whose frame 0 is ``image`` ``[B, 1, *S]`` (see module doc)."""

    def __init__(self, inner: Any, image: Tensor):
        if image.ndim < 2 or image.shape[1] != 1:
            raise ValueError(f"image must be one frame [B, 1, *S], got shape {tuple(image.shape)}")
        self.inner, self.image = inner, image

    def __getattr__(self, name: str) -> Any:  # new_cache, block_size, … of the wrapped model
        return getattr(self.inner, name)

    def _conditioned(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[0] != self.image.shape[0] or x.shape[2:] != self.image.shape[2:]:
            raise ValueError(f"image {tuple(self.image.shape)} does not fit block {tuple(x.shape)}")
        image = self.image.to(device=x.device, dtype=x.dtype)
        return torch.cat([image, x[:, 1:]], dim=1), torch.cat([torch.zeros_like(sigma[:, :1]), sigma[:, 1:]], dim=1)

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: Any) -> Tensor:
        """Block 0: the inner velocity of ``[image ; x[:, 1:]]`` at ``[0 ; σ[:, 1:]]``, frame 0's replaced by
        ``(x_0 − image)/σ_0`` (0 where σ_0 = 0); other blocks: the inner velocity."""
        if block != 0:
            return self.inner.velocity(x, sigma, block, cache)
        conditioned = self._conditioned(x, sigma)
        image = conditioned[0][:, :1]
        s0 = sigma[:, :1].reshape(sigma.shape[0], 1, *([1] * (x.ndim - 2))).to(x.dtype)
        v0 = torch.where(s0 > 0, (x[:, :1] - image) / torch.where(s0 > 0, s0, 1), torch.zeros_like(image))
        if x.shape[1] == 1:
            return v0
        rest = self.inner.velocity(*conditioned, block, cache)[:, 1:]
        return torch.cat([v0, rest], dim=1)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: Any) -> Any:
        """Block 0 is committed with the image as frame 0 at σ = 0; other blocks as given."""
        if block == 0:
            x, sigma = self._conditioned(x, sigma)
        return self.inner.commit(x, sigma, block, cache)
