"""Prompt encoding with Wan's UMT5 encoder (transformers), loaded from a local diffusers-format folder.

Follows diffusers' ``WanPipeline._get_t5_prompt_embeds``: clean the prompt, tokenize to a fixed length
(512 for Wan2.1) with the end-of-sequence token, run the encoder with the attention mask, and zero the
embeddings past each prompt's length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

WAN_TEXT_LENGTH = 512


@dataclass
class TextEncoder:
    """A tokenizer + UMT5 encoder pair; ``max_length`` tokens per prompt."""

    tokenizer: Any
    model: Any
    max_length: int = WAN_TEXT_LENGTH

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check(self, prompt: str) -> None:
        """Raise the tokenizer's error for a prompt it refuses (a word outside a small preset's grammar); tokenizes
        only, so it is cheap enough to run when a prompt arrives, before any model work."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        self.tokenizer([prompt_clean(prompt)], max_length=self.max_length, truncation=True)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """Prompts → embeddings ``[B, max_length, D_text]`` (zeros past each prompt's tokens)."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        tokens = self.tokenizer(
            [prompt_clean(p) for p in prompts],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        hidden = self.model(ids, mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype)


def load_text_encoder(
    folder: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_length: int | None = None,
) -> TextEncoder:
    """Load ``folder/tokenizer`` and ``folder/text_encoder`` (a diffusers-format Wan folder), offline."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    from full.model_files import ModelFolderError, check_safetensors, load_pretrained, read_config, weight_files

    folder = Path(folder)
    for sub in ("tokenizer", "text_encoder"):
        if not (folder / sub).is_dir():
            raise ModelFolderError(f"{folder} has no {sub}/ folder (expected a diffusers-format Wan2.1 folder)")
    read_config(folder / "text_encoder", "text encoder")
    for f in weight_files(folder / "text_encoder", "text encoder"):
        check_safetensors(f)
    tokenizer = load_pretrained(AutoTokenizer, folder / "tokenizer", "tokenizer")
    model = load_pretrained(UMT5EncoderModel, folder / "text_encoder", "text encoder", dtype=dtype)
    length = max_length or min(WAN_TEXT_LENGTH, int(tokenizer.model_max_length))
    return TextEncoder(tokenizer, model.to(device).eval(), length)
