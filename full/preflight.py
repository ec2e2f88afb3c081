"""Before a run's first step: every path, model folder and data set the chosen stages will need, checked at once.

A wrong ``dmd.real_score_path`` must not be found after three stages of training. :func:`check_run_inputs` looks
at everything the unfinished stages of the chain will read — without loading any weights — and reports every
problem in one :class:`~full.config.ConfigError`:

* the base model (``model.path``: a Wan transformer folder, :func:`full.model_files.check_transformer`; the tiny
  preset's is built in code) and the latent size against its patch size;
* each stage's start: an explicit ``<stage>.init`` (a readable safetensors file), or the previous stage's final
  weights when that stage is not part of this invocation (``--stage``); ``ode.pairs`` likewise, with its σ list
  and block size;
* the data sets: ``data.latents`` where a stage trains on videos, ``data.prompts`` for DMD — kind, latent shape
  ``[F, C, H, W]`` and text width against the model;
* ``dmd.real_score_path`` (a Wan transformer of the same latent channels and text width) and ``logging.vae``.

Outputs of stages that run in this invocation before the stage that reads them are produced by the run and are not
checked here; their checksums are verified when they are read (:func:`full.checkpoint.load_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cf_ref.errors import UserError
from cf_ref.recipes import GeneratorInput
from full.config import ConfigError, RunConfig
from full.data import SetKind, TensorSet
from full.model_files import check_safetensors, check_transformer, check_vae
from full.recipes import Stage
from full.stage_inputs import final_weights, stage_inputs

NEEDS_LATENTS = (Stage.AR_DIFFUSION, Stage.ODE_PAIRS, Stage.CD)


class _Found:
    """Problems found so far, each once."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def attempt(self, fn, *args) -> Any:
        """``fn(*args)``, or None with its :class:`UserError` recorded."""
        try:
            return fn(*args)
        except UserError as exc:
            self.add(str(exc))
            return None


def base_model_config(config: RunConfig) -> dict[str, Any]:
    """The base transformer's ``config.json`` (the tiny preset's from code); raises if the folder is unusable."""
    if config.model.preset is not None:
        from full.tiny import TINY_PRESETS, transformer_kwargs

        return transformer_kwargs(TINY_PRESETS[config.model.preset.value])
    return check_transformer(config.model.path, "model.path")


def _check_video(config: RunConfig, model: dict[str, Any], found: _Found) -> None:
    _, ph, pw = model["patch_size"]
    v = config.video
    if v.latent_height % ph or v.latent_width % pw:
        found.add(
            f"video.latent_height × latent_width = {v.latent_height} × {v.latent_width} is not a multiple of the "
            f"model's patch size {ph} × {pw}"
        )


def _check_set(path: str, kind: SetKind, setting: str, config: RunConfig, model: dict, found: _Found) -> None:
    try:
        data = TensorSet(path, kind)
    except UserError as exc:
        found.add(f"{setting}: {exc}")
        return
    if data.fields["text"][-1] != model["text_dim"]:
        found.add(f"{setting}: {path} has text width {data.fields['text'][-1]}, the model {model['text_dim']}")
    if kind is SetKind.LATENTS:
        v = config.video
        expected = [v.latent_frames, model["in_channels"], v.latent_height, v.latent_width]
        if list(data.fields["latents"][-4:]) != expected:
            found.add(
                f"{setting}: {path} holds latents [F, C, H, W] = {list(data.fields['latents'][-4:])}, the run "
                f"expects {expected} (video.latent_frames/height/width and the model's channels)"
            )


def _check_weights(path: Path, setting: str, found: _Found) -> None:
    if not path.is_file():
        found.add(f"{setting}: no weights file at {path}")
    else:
        found.attempt(check_safetensors, path)


def _check_start(config: RunConfig, stage: Stage, runs_before: set[Stage], found: _Found) -> None:
    """The weights (and pairs) ``stage`` starts from, unless a stage of this invocation produces them."""
    inputs = found.attempt(stage_inputs, config, stage, False)
    if inputs is None:
        return
    explicit = getattr(config, stage.section).init
    if inputs.init is not None:
        produced = [s for s in runs_before if inputs.init == final_weights(config, s)]
        if explicit or not produced:
            setting = f"{stage.section}.init" if explicit else f"stage {stage.value} (starts from an earlier stage)"
            _check_weights(inputs.init, setting, found)
    if stage is Stage.ODE and not (config.ode.pairs is None and Stage.ODE_PAIRS in runs_before):
        pairs = found.attempt(TensorSet, inputs.pairs, SetKind.ODE_PAIRS)
        if pairs is not None:
            from full.stages.ode import check_pairs

            found.attempt(check_pairs, pairs, config)


def _check_data(config: RunConfig, stages: Sequence[Stage], model: dict, found: _Found) -> None:
    data_context = config.dmd.generator_input is GeneratorInput.DATA_CONTEXT or config.dmd.image_to_video
    latents_needed = any(s in NEEDS_LATENTS for s in stages) or (
        Stage.DMD in stages and (data_context or config.data.prompts is None)
    )
    latents = config.data.latents
    generated = Path(config.out) / "data" / "latents"  # the tiny preset's synthetic set, written by the run
    if config.model.preset is not None and latents in (None, str(generated)):
        latents = str(generated) if (generated / "index.json").is_file() else None
    elif latents is None and latents_needed:
        users = ", ".join(s.value for s in stages if s in NEEDS_LATENTS or s is Stage.DMD)
        found.add(f"data.latents: stage(s) {users} need a prepared latent set (`cf-ref full prepare`)")
    if latents is not None and latents_needed:
        _check_set(latents, SetKind.LATENTS, "data.latents", config, model, found)
    if Stage.DMD in stages and config.data.prompts is not None:
        _check_set(config.data.prompts, SetKind.PROMPTS, "data.prompts", config, model, found)


def _check_models(config: RunConfig, stages: Sequence[Stage], model: dict, found: _Found) -> None:
    if Stage.DMD in stages and config.dmd.real_score_path is not None:
        real = found.attempt(check_transformer, config.dmd.real_score_path, "dmd.real_score_path")
        for key in ("in_channels", "text_dim"):
            if real is not None and real.get(key) != model.get(key):
                found.add(f"dmd.real_score_path: the real score has {key}={real.get(key)}, the base {model.get(key)}")
    if config.logging.vae is not None:
        vae = found.attempt(check_vae, config.logging.vae, "logging.vae")
        if vae is not None and vae.get("z_dim", model["in_channels"]) != model["in_channels"]:
            found.add(f"logging.vae: the VAE has {vae.get('z_dim')} latent channels, the model {model['in_channels']}")


def check_run_inputs(config: RunConfig, chain: Sequence[Stage], finished: set[Stage]) -> None:
    """Check what the unfinished stages of ``chain`` will read (see module doc); one :class:`ConfigError` listing
    every problem."""
    todo = [s for s in chain if s not in finished]
    if not todo:
        return
    found = _Found()
    model = found.attempt(base_model_config, config)
    for i, stage in enumerate(todo):
        _check_start(config, stage, set(todo[:i]), found)
    if model is not None:
        _check_video(config, model, found)
        _check_data(config, todo, model, found)
        _check_models(config, todo, model, found)
    if found.messages:
        raise ConfigError(
            f"the run cannot start ({len(found.messages)} problem(s), nothing was written):\n  - "
            + "\n  - ".join(found.messages)
        )
