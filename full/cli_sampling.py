"""``cf-ref full sample`` and ``cf-ref full serve``: video from a model folder, a checkpoint or a preset.

Each command parses options and calls the library (:mod:`full.sample_files`, :mod:`full.serve.app`); bad input
raises a :class:`cf_ref.errors.UserError`, printed as one line by :mod:`cf_ref.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cf_ref.errors import UserError
from cf_ref.schedule import DEFAULT_SHIFT

if TYPE_CHECKING:
    from full.sampler import SampleConfig


def _set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op CPU threads for this process (None: leave torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _device_and_dtype(device: str, dtype: str):
    from full.components import resolve_device

    try:
        return resolve_device(device, dtype)
    except ValueError as exc:
        raise UserError(f"--device {device} / --dtype {dtype}: {exc}") from None


def out_folder(value: str) -> Path:
    """``--out``: not empty, and a folder files can be written in (checked before any work)."""
    from cf_ref.io import check_writable_dir

    if not value.strip():
        raise click.BadParameter("is empty; give a folder", param_hint="'--out'")
    return check_writable_dir(value)


def _preset_choice() -> click.Choice:
    from full.presets import PRESETS

    return click.Choice(sorted(PRESETS))


def _sample_config(opts: dict, defaults: dict) -> SampleConfig:
    """The sampler's settings from ``sample``'s options; an option not given takes the model's ``defaults``
    (:func:`full.sample_files.sample_defaults`)."""
    from full.sampler import SampleConfig

    def pick(option: str, setting: str):
        return defaults[setting] if opts[option] is None else opts[option]

    return SampleConfig(
        steps=pick("steps", "steps"),
        first_block_steps=opts["first_block_steps"],
        block_size=pick("block_size", "block_size"),
        num_frames=pick("frames", "num_frames"),
        height=pick("height", "height"),
        width=pick("width", "width"),
        shift=pick("shift", "shift"),
        context_noise=opts["context_noise"],
        window=opts["window"],
        sink=opts["sink"],
        sink_positions=opts["sink_positions"],
        seed=opts["seed"],
        cache=opts["cache"],
        compile=opts["compile_blocks"],
        cuda_graphs=opts["cuda_graphs"],
    )


@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="diffusers-format Wan2.1 folder")
@click.option(
    "--preset",
    type=_preset_choice(),
    help="models by name: small (a trained student, shipped; 'a red square moving left'), tiny, tiny-ti2v-5b (random)",
)
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="DiT weights: converted folder/safetensors or a generator .pt"
)
@click.option("--checkpoint-key", default="generator", show_default=True, help="entry of a training checkpoint")
@click.option("--prompt", help="one prompt")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="file, one prompt a line")
@click.option(
    "--image",
    type=click.Path(path_type=Path),
    help="first frame (PNG/JPEG of the video size): prefilled (--block 1) or frame 0 of the first block (TI2V)",
)
@click.option("--steps", type=click.IntRange(1, 1000), help="denoising steps per block [4; a preset's]")
@click.option("--first-block-steps", type=click.IntRange(1, 1000), help="steps for the first block (CF++ 1/2-step: 4)")
@click.option("--block", "block_size", type=click.IntRange(1), help="latent frames per block [3; a preset's]")
@click.option("--frames", type=click.IntRange(1), help="latent frames [21 = 81 video frames; small: 12]")
@click.option("--height", type=int, help="pixels [480; tiny: 64; small: 128]")
@click.option("--width", type=int, help="pixels [832; tiny: 64; small: 128]")
@click.option("--window", type=click.IntRange(1), help="rolling KV cache length in blocks (default: whole history)")
@click.option("--sink", is_flag=True, help="keep the first block in the rolling cache (attention sink; needs --window)")
@click.option(
    "--sink-positions",
    type=click.Choice(["fixed", "adjacent"]),
    default="fixed",
    show_default=True,
    help="RoPE positions of the sink: where written, or just before the window (the authors' long-video model)",
)
@click.option("--context-noise", type=float, default=0.0, show_default=True, help="σ of the cache pass")
@click.option("--shift", type=float, help=f"timestep shift of the σ list [{DEFAULT_SHIFT:g}; small: 1]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the first prompt (+i for prompt i)")
@click.option("--fps", type=click.IntRange(1), help="frames per second of the MP4 [16; small: 6]")
@click.option(
    "--threads", type=click.IntRange(1), help="CPU threads of torch [torch's default]; 1 is often faster on a busy CPU"
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--save-latents", is_flag=True, help="also write the latents (safetensors)")
@click.option(
    "--cache", type=click.Choice(["dynamic", "static"]), default="dynamic", show_default=True,
    help="KV cache: growing tensors, or preallocated fixed-shape slots (needed by --cuda-graphs)",
)  # fmt: skip
@click.option("--compile", "compile_blocks", is_flag=True, help="torch.compile the transformer blocks")
@click.option("--cuda-graphs", is_flag=True, help="replay each block's passes as CUDA graphs (CUDA; --cache static)")
@click.option("--out", "out_dir", required=True, help="folder of the videos (an earlier sample folder: --overwrite)")
@click.option("--overwrite", is_flag=True, help="replace the videos of an earlier sample in --out")
def sample(**opts) -> None:
    """Generate videos block by block with the KV cache and write one MP4 per prompt."""
    from full import sample_files as files

    out_dir = out_folder(opts["out_dir"])
    _set_threads(opts["threads"])
    device, dtype = _device_and_dtype(opts["device"], opts["dtype"])
    source = files.ModelSource(opts["preset"], opts["model_dir"], opts["checkpoint"], opts["checkpoint_key"])
    prompts = files.read_prompts(opts["prompt"], opts["prompts"])
    earlier = files.existing_outputs(out_dir, prompts, opts["save_latents"])
    if earlier and not opts["overwrite"]:
        raise UserError(
            f"{out_dir} holds an earlier sample ({', '.join(p.name for p in earlier[:3])}); pass --overwrite to "
            "replace it, or choose another --out"
        )
    if opts["cuda_graphs"] and not str(device).startswith("cuda"):
        raise UserError(f"--cuda-graphs needs a CUDA device, got --device {opts['device']} ({device})")
    components, _, _ = files.open_models(source, device, dtype)
    defaults = files.sample_defaults(source)
    config = _sample_config(opts, defaults)
    config.validate()
    components.latent_shape(config.height, config.width)
    image_latent = None if opts["image"] is None else files.image_latent_for(components, opts["image"], config)

    def report(entry: dict) -> None:
        click.echo(
            f"{entry['file']}: {entry['video_frames']} frames, {entry['fps_generation']:.2f} frames/s of generation"
        )

    files.sample_to_folder(
        components,
        prompts,
        config,
        out_dir,
        image_latent=image_latent,
        fps=opts["fps"] or defaults["fps"],
        save_latents=opts["save_latents"],
        model_name=source.describe(),
        checkpoint=str(opts["checkpoint"]) if opts["checkpoint"] else None,
        progress=True,
        on_sample=report,
    )


@click.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="diffusers-format Wan2.1 folder")
@click.option("--preset", type=_preset_choice(), help="models by name (small: a trained student; tiny: random)")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="DiT weights replacing the folder's")
@click.option("--checkpoint-key", default="generator", show_default=True, help="entry of a training checkpoint")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (localhost only by default)")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--block", "block_size", type=click.IntRange(1), help="latent frames per block [3; the preset's]")
@click.option("--height", type=click.IntRange(1), help="pixels [480; tiny: 64]")
@click.option("--width", type=click.IntRange(1), help="pixels [832; tiny: 64]")
@click.option("--window", type=click.IntRange(1), default=6, show_default=True, help="rolling KV cache, blocks")
@click.option("--sink/--no-sink", default=True, show_default=True, help="keep the first block in the cache")
@click.option("--context-noise", type=float, default=0.0, show_default=True, help="σ of the cache pass")
@click.option("--max-waiting", type=click.IntRange(0), default=1, show_default=True, help="clients queued")
@click.option(
    "--threads", type=click.IntRange(1), help="CPU threads of torch [torch's default]; 1 is often faster on a busy CPU"
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
def serve(**opts) -> None:
    """Stream generated video to a web page: prompt, start/stop, change the prompt while it plays."""
    try:
        from full.serve.app import LOOPBACK, ServeSettings, create_app, run_server
        from full.serve.protocol import ServeLimits
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is missing: pip install -e '.[serve]'") from None
    from full.sample_files import ModelSource, open_models, sample_defaults
    from full.sampler import SampleConfig

    _set_threads(opts["threads"])
    device, dtype = _device_and_dtype(opts["device"], opts["dtype"])
    source = ModelSource(opts["preset"], opts["model_dir"], opts["checkpoint"], opts["checkpoint_key"])
    components, (height, width), block = open_models(source, device, dtype)
    defaults = sample_defaults(source)
    config = SampleConfig(
        block_size=opts["block_size"] or block or 3,
        num_frames=opts["block_size"] or block or 3,
        height=height if opts["height"] is None else opts["height"],
        width=width if opts["width"] is None else opts["width"],
        window=opts["window"],
        sink=opts["sink"],
        context_noise=opts["context_noise"],
        steps=defaults["steps"],
        shift=defaults["shift"],
    )
    config.validate()
    limits = ServeLimits(max_waiting=opts["max_waiting"])
    app = create_app(components, ServeSettings(config, source.describe(), fps=defaults["fps"], limits=limits))
    if opts["host"] not in LOOPBACK:
        click.echo(f"warning: binding to {opts['host']} makes the model reachable from other machines", err=True)
    click.echo(f"serving {source.describe()} on http://{opts['host']}:{opts['port']}/ (Ctrl+C to stop)")
    run_server(app, opts["host"], opts["port"], limits)
