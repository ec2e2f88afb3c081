"""full.data: sharded sets, resumable order, prompts."""

from __future__ import annotations

import json

import pytest
import torch

from full.data import DataError, DataOrder, SetKind, ShardWriter, TensorSet, read_prompts
from full.synthetic import SyntheticSpec, write_synthetic_latents


def test_shard_set_round_trip_and_resume(tmp_path):
    writer = ShardWriter(tmp_path / "s", SetKind.LATENTS, shard_size=3, meta={"note": 1})
    latents, text = torch.randn(7, 2, 4, 2, 2), torch.randn(7, 5, 6)
    pending = writer.pending_groups(7)
    assert [g for g, _ in pending] == [0, 1, 2] and pending[2][1] == [6]
    for g, items in pending[:2]:  # an interrupted writer...
        writer.write_group(g, {"latents": latents[items], "text": text[items]}, [f"c{i}" for i in items])
    assert [g for g, _ in writer.pending_groups(7)] == [2]  # ...resumes where it stopped
    with pytest.raises(DataError, match="missing"):
        writer.finish(7)
    g, items = writer.pending_groups(7)[0]
    writer.write_group(g, {"latents": latents[items], "text": text[items]}, [f"c{i}" for i in items])
    writer.write_negative(torch.zeros(5, 6))
    data = TensorSet(writer.finish(7), SetKind.LATENTS)
    assert len(data) == 7 and data.fields == {"latents": (2, 4, 2, 2), "text": (5, 6)}
    batch = data.fetch([6, 0, 4])
    assert torch.equal(batch["latents"], latents[[6, 0, 4]]) and torch.equal(batch["text"], text[[6, 0, 4]])
    assert data.captions == [f"c{i}" for i in range(7)] and data.meta == {"note": 1}
    assert torch.equal(data.negative, torch.zeros(5, 6))
    data.check_latent_shape((2, 4, 2, 2))
    with pytest.raises(DataError, match=r"expects \[3, 4, 2, 2\]"):
        data.check_latent_shape((3, 4, 2, 2))


def test_set_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="not a prepared set"):
        TensorSet(tmp_path)
    path = write_synthetic_latents(tmp_path / "syn", SyntheticSpec(count=4), shard_size=2)
    with pytest.raises(DataError, match="is a latents set, expected a prompts set"):
        TensorSet(path, SetKind.PROMPTS)
    with pytest.raises(DataError, match="no field"):
        TensorSet(path).fetch([0], ["states"])
    (path / "shard-00001.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="cannot read shard"):
        TensorSet(path).fetch([3])
    (path / "shard-00001.safetensors").unlink()
    with pytest.raises(DataError, match="is missing"):
        TensorSet(path).fetch([3])
    index = json.loads((path / "index.json").read_text())
    (path / "index.json").write_text(json.dumps({**index, "format": "other"}))
    with pytest.raises(DataError, match="unknown format"):
        TensorSet(path)
    writer = ShardWriter(tmp_path / "p", SetKind.ODE_PAIRS, 2)
    with pytest.raises(DataError, match="needs fields"):
        writer.write_group(0, {"text": torch.zeros(1, 2, 2)}, ["x"])


def test_data_order_is_a_pure_function_of_seed_and_step():
    order = DataOrder(num_samples=10, batch_size=2, seed=7, world_size=1, grad_accum=1)
    epoch = [i for step in range(5) for i in order.batch(step)]
    assert sorted(epoch) == list(range(10))  # every sample once per epoch
    assert order.batch(3) == DataOrder(10, 2, 7).batch(3)  # no state: resuming at step 3 reads the same
    assert order.batch(3) != DataOrder(10, 2, 8).batch(3) or order.batch(4) != DataOrder(10, 2, 8).batch(4)
    ranks = [DataOrder(12, 2, 0, rank=r, world_size=3, grad_accum=2) for r in range(3)]
    seen = [i for step in range(1) for micro in range(2) for o in ranks for i in o.batch(step, micro)]
    assert sorted(seen) == list(range(12))  # ranks and micro-batches partition the stream


def test_read_prompts(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n")
    assert read_prompts(tmp_path / "p.txt") == ["a cat", "a dog"]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no prompts"):
        read_prompts(tmp_path / "e.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_prompts(tmp_path / "none.txt")


def _flip(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_corrupt_shard_is_found_by_a_verifying_reader_and_rewritten_on_resume(tmp_path):
    spec = SyntheticSpec(count=4)
    path = write_synthetic_latents(tmp_path / "syn", spec, shard_size=2)
    clean = TensorSet(path).fetch([2, 3])
    _flip(path / "shard-00001.safetensors")
    assert TensorSet(path).fetch([0])["latents"].shape[0] == 1  # a plain reader does not look
    with pytest.raises(DataError, match="shard-00001.safetensors is corrupt.*re-run the stage that wrote it"):
        TensorSet(path, verify=True).fetch([3])
    TensorSet(path, verify=True).fetch([0])  # the other shard is fine
    writer = ShardWriter(path, SetKind.LATENTS, 2, request={"source": "synthetic moving shapes", **vars(spec)})
    assert [g for g, _ in writer.pending_groups(4)] == [1] and writer.replaced == [path / "shard-00001.safetensors"]
    (path / "index.json").unlink()
    again = write_synthetic_latents(tmp_path / "syn", spec, shard_size=2)  # the same request: rewrites shard 1
    assert torch.equal(TensorSet(again, verify=True).fetch([2, 3])["latents"], clean["latents"])


def test_a_set_resumes_only_for_the_same_request(tmp_path):
    from full.data import REQUEST

    ShardWriter(tmp_path, SetKind.PROMPTS, 2, request={"seed": 0}).write_group(0, {"text": torch.zeros(2, 3, 4)}, "ab")
    assert json.loads((tmp_path / REQUEST).read_text()) == {"kind": "prompts", "shard_size": 2, "seed": 0}
    ShardWriter(tmp_path, SetKind.PROMPTS, 2, request={"seed": 0})  # the same: fine
    with pytest.raises(DataError, match=r"another request \(seed: 0 → 1\).*--restart"):
        ShardWriter(tmp_path, SetKind.PROMPTS, 2, request={"seed": 1})
    with pytest.raises(DataError, match=r"shard_size: 2 → 3"):
        ShardWriter(tmp_path, SetKind.PROMPTS, 3, request={"seed": 0})
    ShardWriter(tmp_path, SetKind.PROMPTS, 2, request={"seed": 1}, restart=True)
    assert not list(tmp_path.glob("shard-*")) and json.loads((tmp_path / REQUEST).read_text())["seed"] == 1
    (tmp_path / REQUEST).unlink()
    (tmp_path / "shard-00000.safetensors").write_bytes(b"left by an older writer")
    with pytest.raises(DataError, match="recorded no request"):
        ShardWriter(tmp_path, SetKind.PROMPTS, 2, request={"seed": 1})


def test_prompt_files_must_be_utf8(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"un caf\xe9\n")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 6"):
        read_prompts(tmp_path / "p.txt")
