"""``cf-ref full …``: the video track (causal Wan2.1 DiT)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import click


@click.group()
def full() -> None:
    """The full track: Wan2.1-T2V-1.3B made causal (teacher forcing, KV cache), sampled and trained in three stages."""


def _device_and_dtype(device: str, dtype: str):
    import torch

    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    if dtype == "auto":
        dtype = "bf16" if dev.type == "cuda" else "fp32"
    return dev, {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def _read_prompts(prompt: str | None, prompts: Path | None) -> list[str]:
    if (prompt is None) == (prompts is None):
        raise click.UsageError("give exactly one of --prompt TEXT or --prompts FILE")
    if prompt is not None:
        return [prompt]
    lines = [line.strip() for line in prompts.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise click.UsageError(f"{prompts} holds no prompt (one per line)")
    return lines


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


@full.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="diffusers-format Wan2.1 folder")
@click.option("--preset", type=click.Choice(["tiny"]), help="tiny random models built in code (offline smoke run)")
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="DiT weights: converted folder/safetensors or a generator .pt"
)
@click.option("--checkpoint-key", default="generator", show_default=True, help="entry of a training checkpoint")
@click.option("--prompt", help="one prompt")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="file, one prompt a line")
@click.option(
    "--image", type=click.Path(path_type=Path), help="first frame (PNG/JPEG of the video size); frame-wise only"
)
@click.option("--steps", type=click.IntRange(1, 1000), default=4, show_default=True, help="denoising steps per block")
@click.option("--first-block-steps", type=click.IntRange(1, 1000), help="steps for the first block (CF++ 1/2-step: 4)")
@click.option(
    "--block", "block_size", type=click.IntRange(1), default=3, show_default=True, help="latent frames per block"
)
@click.option(
    "--frames", type=click.IntRange(1), default=21, show_default=True, help="latent frames (21 = 81 video frames)"
)
@click.option("--height", type=int, help="pixels [480; tiny: 64]")
@click.option("--width", type=int, help="pixels [832; tiny: 64]")
@click.option("--window", type=click.IntRange(1), help="rolling KV cache length in blocks (default: whole history)")
@click.option("--context-noise", type=float, default=0.0, show_default=True, help="σ of the cache pass")
@click.option("--shift", type=float, default=5.0, show_default=True, help="timestep shift of the σ list")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the first prompt (+i for prompt i)")
@click.option("--fps", type=int, default=16, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--save-latents", is_flag=True, help="also write the latents (safetensors)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def sample(**opts) -> None:
    """Generate videos block by block with the KV cache and write one MP4 per prompt."""
    from cf_ref.io import save_tensors, write_json
    from full.sampler import SampleConfig, config_dict, generate, load_components
    from full.video import encode_image, load_image, to_uint8, video_frames, write_mp4

    prompts = _read_prompts(opts["prompt"], opts["prompts"])
    if (opts["model_dir"] is None) == (opts["preset"] is None):
        raise click.UsageError("give exactly one of --model DIR or --preset tiny")
    device, dtype = _device_and_dtype(opts["device"], opts["dtype"])
    with tempfile.TemporaryDirectory(prefix="cf-ref-tiny-") as tmp:
        if opts["preset"] == "tiny":
            from full.tiny import TINY, write_tiny_pipeline

            model_dir, text_length = Path(write_tiny_pipeline(tmp)), TINY.text_length
            default_size = (TINY.height, TINY.width)
        else:
            model_dir, text_length, default_size = opts["model_dir"], None, (480, 832)
        config = SampleConfig(
            steps=opts["steps"],
            first_block_steps=opts["first_block_steps"],
            block_size=opts["block_size"],
            num_frames=opts["frames"],
            height=opts["height"] or default_size[0],
            width=opts["width"] or default_size[1],
            shift=opts["shift"],
            context_noise=opts["context_noise"],
            window=opts["window"],
            seed=opts["seed"],
        )
        try:
            config.validate()
            if opts["image"] is not None and config.block_size != 1:
                raise ValueError("--image needs the frame-wise model (--block 1)")
            components = load_components(
                model_dir, opts["checkpoint"], opts["checkpoint_key"], device, dtype, text_length
            )
            components.latent_shape(config.height, config.width)
            image_latent = None
            if opts["image"] is not None:
                image = load_image(opts["image"], config.height, config.width)
                image_latent = encode_image(components.vae, image.to(device))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc)) from exc
        out_dir = opts["out_dir"]
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = {
            "model": str(opts["model_dir"]) if opts["model_dir"] else "preset:tiny",
            "checkpoint": str(opts["checkpoint"]) if opts["checkpoint"] else None,
            "config": config_dict(config),
            "samples": [],
        }
        for i, prompt in enumerate(prompts):
            run = SampleConfig(**{**config_dict(config), "seed": config.seed + i})
            embeds = components.text.encode([prompt]).to(dtype)
            result = generate(components, embeds, run, image_latent=image_latent, progress=True)
            name = f"{i:03d}_{_slug(prompt)}"
            write_mp4(out_dir / f"{name}.mp4", to_uint8(result.video[0]), fps=opts["fps"])
            if opts["save_latents"]:
                save_tensors(out_dir / f"{name}.safetensors", {"latents": result.latents[0].float()})
            entry = {"index": i, "prompt": prompt, "file": f"{name}.mp4", "seed": run.seed}
            entry |= {
                "video_frames": video_frames(run.num_frames),
                "fps_generation": result.fps,
                "timings_s": result.timings,
            }
            manifest["samples"].append(entry)
            click.echo(f"{name}.mp4: {entry['video_frames']} frames, {result.fps:.2f} frames/s of generation")
        write_json(out_dir / "samples.json", manifest)


@full.command()
@click.option(
    "--input",
    "src",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="original Wan2.1 DiT (.safetensors / folder) or a Self/Causal Forcing checkpoint (.pt)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="new diffusers transformer folder",
)
@click.option(
    "--key", default="generator", show_default=True, help="entry of a training checkpoint (generator / generator_ema)"
)
@click.option("--head-dim", type=int, default=128, show_default=True, help="attention head size (Wan: 128)")
def convert(src: Path, out_dir: Path, key: str, head_dim: int) -> None:
    """Convert a Wan2.1 / Self-Forcing / Causal-Forcing DiT checkpoint to a diffusers transformer folder."""
    from full.convert import convert_checkpoint

    try:
        path = convert_checkpoint(src, out_dir, key=key, head_dim=head_dim)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {path} (load with CausalWanTransformer3DModel.from_pretrained)")
