r"""Weight conversion into the diffusers layout used by :class:`full.model.CausalWanTransformer3DModel`.

Sources:

* an **original-layout Wan2.1** DiT (``Wan-AI/Wan2.1-T2V-1.3B``'s ``diffusion_pytorch_model.safetensors``,
  the ``WanModel`` of the Wan repository);
* the **generator** state dicts released with Self Forcing / Causal Forcing (``torch.save`` dicts with a
  ``generator`` and often a ``generator_ema`` entry): the same original layout under a ``model.`` prefix,
  possibly with FSDP / activation-checkpointing / ``torch.compile`` wrapper segments in the names;
* a diffusers-layout state dict (passed through);
* a **sharded** checkpoint: a folder (or its ``*.safetensors.index.json``) whose index maps every tensor to one of
  ``diffusion_pytorch_model-0000i-of-0000n.safetensors`` — how Wan2.1-T2V-14B and Wan2.2-TI2V-5B are released, in
  the original layout (their ``config.json`` has the original ``WanModel`` arguments, ``model_type`` ``t2v`` /
  ``ti2v``; an ``i2v`` / ``flf2v`` / ``s2v`` / ``animate`` model is refused in one line).

The files are read by :mod:`full.checkpoint_files`; this module maps their names and builds the model.

Wan2.2-TI2V-5B's DiT has exactly Wan2.1's tensor names (wider, 48 latent channels); ``--arch NAME`` checks a
checkpoint against a registered architecture (:mod:`full.architectures`) and names the first tensor whose shape
differs.

Key mapping (original → diffusers), ``{i}`` = block index; names not listed are identical::

    text_embedding.0.*            condition_embedder.text_embedder.linear_1.*
    text_embedding.2.*            condition_embedder.text_embedder.linear_2.*
    time_embedding.0.*            condition_embedder.time_embedder.linear_1.*
    time_embedding.2.*            condition_embedder.time_embedder.linear_2.*
    time_projection.1.*           condition_embedder.time_proj.*
    head.head.*                   proj_out.*
    head.modulation               scale_shift_table
    blocks.{i}.self_attn.{q,k,v,o}.*   blocks.{i}.attn1.{to_q,to_k,to_v,to_out.0}.*
    blocks.{i}.self_attn.norm_{q,k}.*  blocks.{i}.attn1.norm_{q,k}.*
    blocks.{i}.cross_attn.…            blocks.{i}.attn2.…   (same sub-names as self_attn)
    blocks.{i}.norm3.*            blocks.{i}.norm2.*      (the affine cross-attention norm)
    blocks.{i}.ffn.0.*            blocks.{i}.ffn.net.0.proj.*
    blocks.{i}.ffn.2.*            blocks.{i}.ffn.net.2.*
    blocks.{i}.modulation         blocks.{i}.scale_shift_table

(The original ``norm1``/``norm2`` carry no parameters.) Shapes are unchanged. The model config (layers,
dims, patch size, norms) is read off the tensor shapes; the head count is ``dim / head_dim`` with Wan's
``head_dim = 128``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from torch import Tensor

from cf_ref.io import follow_umask, make_temp_dir
from full.architectures import Architecture, UnsupportedArchitecture, supported_line
from full.checkpoint_files import ConvertError, load_state_dict

TOP_LEVEL: tuple[tuple[str, str], ...] = (
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("head.head.", "proj_out."),
    ("head.modulation", "scale_shift_table"),
    ("patch_embedding.", "patch_embedding."),
)
_ATTN = (
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("o.", "to_out.0."),
    ("norm_q.", "norm_q."),
    ("norm_k.", "norm_k."),
)
IN_BLOCK: tuple[tuple[str, str], ...] = (
    *((f"self_attn.{a}", f"attn1.{b}") for a, b in _ATTN),
    *((f"cross_attn.{a}", f"attn2.{b}") for a, b in _ATTN),
    ("norm3.", "norm2."),
    ("ffn.0.", "ffn.net.0.proj."),
    ("ffn.2.", "ffn.net.2."),
    ("modulation", "scale_shift_table"),
)
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
WAN_HEAD_DIM = 128
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.*)$")
REQUIRED = {
    "patch_embedding.weight": "the patch embedding",
    "proj_out.weight": "the output head (proj_out / head.head)",
    "condition_embedder.text_embedder.linear_1.weight": "the text embedding",
    "condition_embedder.time_embedder.linear_1.weight": "the time embedding",
    "blocks.0.ffn.net.0.proj.weight": "the first block",
}
"""Tensors :func:`infer_config` reads the model's sizes from, and what each is."""


def _rename(key: str, rules: tuple[tuple[str, str], ...], reverse: bool) -> str | None:
    for original, diffusers in rules:
        src, dst = (diffusers, original) if reverse else (original, diffusers)
        if key.startswith(src) and (src.endswith(".") or key == src):
            return dst + key[len(src) :]
    return None


def _convert(state: dict[str, Tensor], reverse: bool) -> dict[str, Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        m = _BLOCK.match(key)
        if m:
            rest = _rename(m.group(2), IN_BLOCK, reverse)
            new = None if rest is None else f"blocks.{m.group(1)}.{rest}"
        else:
            new = _rename(key, TOP_LEVEL, reverse)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if any("img" in k for k in unknown):
        raise UnsupportedArchitecture(
            f"an image-to-video Wan checkpoint ({sorted(k for k in unknown if 'img' in k)[0]}: image cross-attention) "
            f"is not supported by the causal processors; {supported_line()}"
        )
    if unknown:
        what = "diffusers" if reverse else "original Wan2.1"
        raise ConvertError(f"{len(unknown)} keys are not in the {what} T2V layout: {sorted(unknown)[:8]}")
    return out


def original_to_diffusers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original-layout Wan2.1 DiT state dict to diffusers' ``WanTransformer3DModel`` names."""
    return _convert(state, reverse=False)


def diffusers_to_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`original_to_diffusers`."""
    return _convert(state, reverse=True)


def strip_wrappers(state: dict[str, Tensor], prefix: str = "model.") -> dict[str, Tensor]:
    """Remove a leading ``prefix`` (the ``WanDiffusionWrapper.model`` of Self/Causal Forcing) and FSDP /
    checkpoint-wrapper / ``torch.compile`` name segments."""
    out = {}
    for key, value in state.items():
        for seg in WRAPPER_SEGMENTS:
            key = key.replace(seg, "")
        out[key[len(prefix) :] if key.startswith(prefix) else key] = value
    return out


def detect_layout(state: dict[str, Tensor]) -> str:
    """``"original"`` or ``"diffusers"`` from the names of the first block's attention weights."""
    keys = state.keys()
    if any(k.startswith("blocks.0.self_attn.") for k in keys):
        return "original"
    if any(k.startswith("blocks.0.attn1.") for k in keys):
        return "diffusers"
    raise ConvertError(f"not a Wan DiT state dict (no blocks.0 attention weights); first keys: {list(keys)[:5]}")


def to_diffusers_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Any supported state dict (original, generator, diffusers) → diffusers names."""
    state = strip_wrappers(state)
    return original_to_diffusers(state) if detect_layout(state) == "original" else state


def infer_config(state: dict[str, Tensor], head_dim: int = WAN_HEAD_DIM) -> dict:
    """``WanTransformer3DModel`` arguments read off a diffusers-layout state dict's shapes."""
    if head_dim < 1:
        raise ConvertError(f"head_dim must be >= 1 (Wan: {WAN_HEAD_DIM}), got {head_dim}")
    missing = [f"{what} ({key})" for key, what in REQUIRED.items() if key not in state]
    if missing:
        raise ConvertError(f"the checkpoint lacks {', '.join(missing)}: not a complete Wan DiT")
    patch = state["patch_embedding.weight"]  # [D, C_in, p_t, p_h, p_w]
    if patch.ndim != 5:
        raise ConvertError(f"patch_embedding.weight has shape {tuple(patch.shape)}, expected [D, C, p_t, p_h, p_w]")
    dim = patch.shape[0]
    if dim % head_dim:
        raise ConvertError(f"hidden size {dim} is not a multiple of head_dim={head_dim}")
    patch_size = tuple(patch.shape[2:])
    num_layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    return dict(
        patch_size=patch_size,
        num_attention_heads=dim // head_dim,
        attention_head_dim=head_dim,
        in_channels=patch.shape[1],
        out_channels=state["proj_out.weight"].shape[0] // (patch_size[0] * patch_size[1] * patch_size[2]),
        text_dim=state["condition_embedder.text_embedder.linear_1.weight"].shape[1],
        freq_dim=state["condition_embedder.time_embedder.linear_1.weight"].shape[1],
        ffn_dim=state["blocks.0.ffn.net.0.proj.weight"].shape[0],
        num_layers=num_layers,
        cross_attn_norm="blocks.0.norm2.weight" in state,
        qk_norm="rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in state else None,
    )


def check_architecture(state: dict[str, Tensor], arch: Architecture) -> None:
    """Check a diffusers-layout ``state`` against architecture ``arch``: the first tensor (in the model's order)
    that is missing or has another shape is named with both shapes, as is a tensor the architecture lacks."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in WanTransformer3DModel(**arch.transformer).state_dict().items()}
    for name, shape in expected.items():
        if name not in state:
            raise ConvertError(f"the checkpoint lacks {name} (shape {list(shape)} in {arch.name})")
        if tuple(state[name].shape) != shape:
            raise ConvertError(
                f"the checkpoint is not {arch.name}: tensor {name} has shape {list(state[name].shape)}, "
                f"{arch.name} expects {list(shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ConvertError(f"the checkpoint has {len(extra)} tensors {arch.name} lacks, e.g. {extra[0]}")


def build_model(state: dict[str, Tensor], head_dim: int = WAN_HEAD_DIM, arch: Architecture | None = None):
    """A :class:`CausalWanTransformer3DModel` holding ``state`` (any supported layout), without a random init;
    with ``arch``, the checkpoint must be that architecture (:func:`check_architecture`) and gets its config."""
    from full.model import CausalWanTransformer3DModel

    state = to_diffusers_layout(state)
    if arch is not None:
        check_architecture(state, arch)
    config = dict(arch.transformer) if arch is not None else infer_config(state, head_dim)
    with torch.device("meta"):
        model = CausalWanTransformer3DModel(**config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # missing / unexpected keys, shapes that do not fit
        first = str(exc).strip().splitlines()[0]
        expected = set(model.state_dict())
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        detail = f"missing {missing[:3]}, unexpected {extra[:3]}" if missing or extra else first
        raise ConvertError(f"the checkpoint does not make a complete Wan DiT: {detail}") from None
    rope = model.rope  # its tables are buffers outside the state dict: rebuild them on the CPU
    model.rope = type(rope)(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    return model.eval()


def convert_checkpoint(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    key: str | None = "generator",
    head_dim: int = WAN_HEAD_DIM,
    arch: Architecture | None = None,
) -> Path:
    """Convert ``src`` to a diffusers transformer folder ``out_dir`` (``config.json`` + safetensors),
    loadable with ``CausalWanTransformer3DModel.from_pretrained(out_dir)``; ``arch`` checks the checkpoint is that
    architecture. Written to a temporary folder beside ``out_dir`` and renamed into place."""
    from cf_ref.io import check_writable_dir

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConvertError(f"output folder {out_dir} exists and is not empty; choose another --out")
    check_writable_dir(out_dir.parent if str(out_dir.parent) else ".", "the output folder's parent")
    model = build_model(load_state_dict(src, key), head_dim, arch)
    tmp = make_temp_dir(out_dir.parent, out_dir.name)
    try:
        model.save_pretrained(tmp)
        follow_umask(tmp)  # safetensors writes 0600
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir
