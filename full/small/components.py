r"""The small track's "VAE" and "text encoder" behind the interfaces the sampler uses from Wan's, so the trained
small student samples through :mod:`full.components` like any model folder (``--preset small``).

* :class:`PatchCodeVAE` — the fixed patch code of :mod:`full.synthetic` (:func:`~full.synthetic.patch_encode` /
  :func:`~full.synthetic.patch_decode`: ``p×p`` RGB pixels ↔ ``3p²`` channels, value ``2·(rgb − ½)``), shown
  ``s``× larger by nearest-neighbour repetition (``display_scale``; a 16 px frame is hard to see). Latents
  ``[B, C, F, h, w]`` ↔ video ``[B, 3, F, h·p·s, w·p·s]`` in [-1, 1], one video frame per latent frame (temporal
  factor 1), per-channel mean 0 and std 1 (the DiT's latents are the code itself). Decoding then encoding gives the
  latents back exactly (values in [-1, 1]; the code's value is the video's, so no arithmetic is done); encoding
  reads each ``s×s`` cell at its top-left pixel (nearest neighbour), so a decoded video encodes back exactly. It answers the Wan-VAE calls of :mod:`full.video` (``encode(…).latent_dist.mode()``,
  ``decode(…).sample``, and the per-frame ``decoder`` / ``post_quant_conv`` / ``clear_cache`` loop that
  :class:`full.video.StreamingDecoder` drives: frame-wise, so its feature cache stays empty).
* :class:`WordVectorEncoder` + :class:`WordTokenizer` — the captions as the small track embeds them
  (:func:`full.synthetic.embed_caption`: word ``i`` ↦ a fixed N(0, 1) vector, zero padding) behind
  :class:`full.text.TextEncoder`'s tokenizer/model calls. A prompt must follow the training grammar
  ``a COLOUR SHAPE moving DIRECTION`` (objects joined by ``and``); anything else is a one-line error that lists
  what the model understands. The empty prompt is the training set's negative (all padding).

Folders: ``vae/config.json`` and ``text_encoder/config.json`` name these classes (``_class_name``); nothing else is
stored (both are fixed functions). :func:`write_small_components` writes them, :func:`holds_patch_code` /
:func:`holds_word_vectors` tell :mod:`full.components` which loader a folder needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import Tensor

from cf_ref.errors import InvalidValue
from full.model_files import ModelFolderError, read_config
from full.synthetic import COLOURS, DIRECTIONS, SHAPES, BounceSpec, embed_caption
from full.text import TextEncoder

#: The caption grammar of :class:`full.synthetic.ShapeVideo`: one word from each slot, in order.
GRAMMAR: tuple[tuple[str, ...], ...] = (("a",), COLOURS, SHAPES, ("moving",), tuple(DIRECTIONS))
JOIN = "and"


class PatchCodeVAE(ModelMixin, ConfigMixin):
    """The fixed patch code as a video autoencoder (module doc). ``code_patch`` p, ``display_scale`` s."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, code_patch: int = 2, display_scale: int = 8):
        super().__init__()
        if code_patch < 1 or display_scale < 1:
            raise InvalidValue(f"code_patch and display_scale must be >= 1, got {code_patch}, {display_scale}")
        z = 3 * code_patch**2
        # the attributes full.video and full.components read from a Wan VAE's config
        self.register_to_config(
            z_dim=z,
            scale_factor_spatial=code_patch * display_scale,
            scale_factor_temporal=1,
            latents_mean=[0.0] * z,
            latents_std=[1.0] * z,
            patch_size=None,
        )
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)  # gives the module a device and dtype
        self.use_tiling = False
        self._feat_map, self._conv_idx = [], [0]

    def to_video(self, z: Tensor) -> Tensor:
        """Latents ``[B, C, F, h, w]`` → video ``[B, 3, F, h·p·s, w·p·s]`` in [-1, 1]: ``2·patch_decode(z) − 1``,
        each pixel repeated s×s."""
        p, s = self.config.code_patch, self.config.display_scale
        # patch_decode's layout; its value map 2·rgb − 1 = the code's value, so no arithmetic (exact)
        video = rearrange(z.clamp(-1.0, 1.0), "b (c p1 p2) f h w -> b c f (h p1) (w p2)", c=3, p1=p, p2=p)
        return repeat(video, "b c f h w -> b c f (h s1) (w s2)", s1=s, s2=s)

    def to_latents(self, video: Tensor) -> Tensor:
        """Video ``[B, 3, F, H, W]`` in [-1, 1] (H, W multiples of p·s) → latents ``[B, 3p², F, H/(p·s), W/(p·s)]``
        (each s×s cell read at its top-left pixel, then :func:`~full.synthetic.patch_encode`'s layout)."""
        p, s = self.config.code_patch, self.config.display_scale
        if video.shape[1] != 3 or video.shape[-2] % (p * s) or video.shape[-1] % (p * s):
            raise InvalidValue(f"video must be [B, 3, F, H, W] with H, W multiples of {p * s}, got {list(video.shape)}")
        cells = video[..., ::s, ::s]  # nearest-neighbour: the inverse of the display's repetition
        return rearrange(cells, "b c f (h p1) (w p2) -> b (c p1 p2) f h w", p1=p, p2=p)

    def encode(self, video: Tensor) -> SimpleNamespace:
        """Wan's ``encode(x).latent_dist``: the code is deterministic, so ``mode()`` and ``sample()`` are the latents."""
        z = self.to_latents(video)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: z, sample=lambda generator=None: z))

    def decode(self, z: Tensor, return_dict: bool = True) -> SimpleNamespace:
        """Wan's ``decode(z).sample``: video ``[B, 3, F, H, W]`` in [-1, 1]."""
        return SimpleNamespace(sample=self.to_video(z))

    # the per-frame loop of full.video.StreamingDecoder (frame-wise: no feature cache to carry)
    def post_quant_conv(self, z: Tensor) -> Tensor:
        return z

    def decoder(self, z: Tensor, feat_cache=None, feat_idx=None, first_chunk: bool = False) -> Tensor:
        return self.to_video(z)

    def clear_cache(self) -> None:
        self._feat_map, self._conv_idx = [], [0]

    def disable_tiling(self) -> None:
        self.use_tiling = False


def check_prompt(words: list[str], objects: int) -> None:
    """Raise a one-line :class:`~cf_ref.errors.InvalidValue` unless ``words`` follow :data:`GRAMMAR` for 1 …
    ``objects`` objects joined by ``and`` (no words: the empty prompt, allowed)."""
    understood = (
        f"the small model understands 'a COLOUR SHAPE moving DIRECTION'"
        f"{f' (up to {objects} joined by and)' if objects > 1 else ''} with COLOUR one of {', '.join(COLOURS)}; "
        f"SHAPE one of {', '.join(SHAPES)}; DIRECTION one of {', '.join(DIRECTIONS)}"
    )
    vocabulary = {w for slot in GRAMMAR for w in slot} | {JOIN}
    unknown = [w for w in words if w not in vocabulary]
    if unknown:
        raise InvalidValue(f"unknown word {unknown[0]!r} in prompt {' '.join(words)!r}; {understood}")
    n = len(GRAMMAR)
    count = (len(words) + 1) // (n + 1)
    expected = [list(GRAMMAR[i % (n + 1)]) if i % (n + 1) < n else [JOIN] for i in range(count * (n + 1) - 1)]
    ok = 1 <= count <= objects and len(words) == len(expected) and all(w in e for w, e in zip(words, expected))
    if words and not ok:
        raise InvalidValue(f"prompt {' '.join(words)!r} is outside the training grammar; {understood}")


def vocabulary() -> list[str]:
    """The words of :data:`GRAMMAR` and ``and``, in a fixed order (token id = index + 1; 0 is padding)."""
    return [w for slot in GRAMMAR for w in slot] + [JOIN]


class WordTokenizer:
    """Prompt → word ids under the grammar (the call :class:`full.text.TextEncoder` makes of a HF tokenizer)."""

    def __init__(self, words: list[str], max_length: int, objects: int = 1):
        self.ids = {w: i + 1 for i, w in enumerate(words)}
        self.model_max_length, self.objects = max_length, objects

    def __call__(self, prompts: list[str], max_length: int | None = None, **_ignored) -> SimpleNamespace:
        """``input_ids`` and ``attention_mask`` ``[B, max_length]`` (long), truncated like ``embed_caption``."""
        length = max_length or self.model_max_length
        ids = torch.zeros(len(prompts), length, dtype=torch.long)
        for b, prompt in enumerate(prompts):
            words = prompt.lower().split()
            check_prompt(words, self.objects)
            for i, w in enumerate(words[:length]):
                ids[b, i] = self.ids[w]
        return SimpleNamespace(input_ids=ids, attention_mask=(ids > 0).long())


class WordVectorEncoder(ModelMixin, ConfigMixin):
    """Word ids ``[B, L]`` → :func:`full.synthetic.embed_caption`'s vectors ``[B, L, d_model]`` (padding 0)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, words: list[str], d_model: int, max_length: int, objects: int = 1):
        super().__init__()
        table = torch.stack([torch.zeros(d_model)] + [embed_caption(w, 1, d_model)[0] for w in words])
        self.table = torch.nn.Parameter(table, requires_grad=False)  # [V + 1, D]: a parameter, so it has a device

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> SimpleNamespace:
        hidden = self.table[input_ids]
        if attention_mask is not None:
            hidden = hidden * attention_mask[..., None].to(hidden.dtype)
        return SimpleNamespace(last_hidden_state=hidden)


def _class_name(folder: Path) -> str | None:
    """``folder/config.json``'s ``_class_name``; None when there is no readable config (the Wan loaders then say why)."""
    try:
        return read_config(folder, "model folder").get("_class_name")
    except ModelFolderError:
        return None


def holds_patch_code(folder: str | os.PathLike) -> bool:
    """Whether ``folder/vae`` is a :class:`PatchCodeVAE`."""
    return _class_name(Path(folder) / "vae") == PatchCodeVAE.__name__


def holds_word_vectors(folder: str | os.PathLike) -> bool:
    """Whether ``folder/text_encoder`` is a :class:`WordVectorEncoder`."""
    return _class_name(Path(folder) / "text_encoder") == WordVectorEncoder.__name__


def _config(folder: Path, what: str) -> dict:
    """``folder/config.json`` without diffusers' ``_…`` entries (a missing or malformed file: one line)."""
    return {k: v for k, v in read_config(folder, what).items() if not k.startswith("_")}


def _placed(module: ModelMixin, device, dtype: torch.dtype) -> ModelMixin:
    """``module`` on ``device``, cast only when not fp32 (diffusers warns on every cast)."""
    module = module.to(device) if dtype == torch.float32 else module.to(device=device, dtype=dtype)
    return module.eval()


def load_patch_code_vae(folder: str | os.PathLike, device="cpu", dtype=torch.float32) -> PatchCodeVAE:
    """``folder/vae`` as a :class:`PatchCodeVAE`."""
    config = _config(Path(folder) / "vae", "patch-code VAE")
    try:
        vae = PatchCodeVAE(code_patch=int(config["code_patch"]), display_scale=int(config["display_scale"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{folder}/vae/config.json is not a patch-code VAE config ({exc})") from None
    return _placed(vae, device, dtype)


def load_word_vector_encoder(
    folder: str | os.PathLike, device="cpu", dtype=torch.float32, max_length: int | None = None
) -> TextEncoder:
    """``folder/text_encoder`` as a :class:`full.text.TextEncoder` of a :class:`WordTokenizer` and a
    :class:`WordVectorEncoder` (``max_length`` None: the trained length)."""
    config = _config(Path(folder) / "text_encoder", "word-vector text encoder")
    try:
        words, dim, length, objects = (
            config["words"],
            int(config["d_model"]),
            int(config["max_length"]),
            config["objects"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{folder}/text_encoder/config.json is not a word-vector config ({exc})") from None
    if words != vocabulary():
        raise ModelFolderError(f"{folder}/text_encoder/config.json: its words are not this grammar's {vocabulary()}")
    model = _placed(WordVectorEncoder(words, dim, length, int(objects)), device, dtype)
    length = max_length or length
    return TextEncoder(WordTokenizer(words, length, int(objects)), model, length)


def write_small_components(folder: str | os.PathLike, data: BounceSpec, display_scale: int = 8) -> None:
    """Write ``folder/vae`` and ``folder/text_encoder`` for videos of ``data`` (patch, caption length and width)."""
    folder = Path(folder)
    PatchCodeVAE(data.patch, display_scale).save_config(folder / "vae")
    WordVectorEncoder(vocabulary(), data.text_dim, data.text_length, data.objects).save_config(folder / "text_encoder")
