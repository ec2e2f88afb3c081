"""full.stages.ode_pairs: the pairs hold the teacher's trajectory at the student's σ's; AR-teacher pairs under clean
context are frame-level injective, the bidirectional model's are not."""

from __future__ import annotations

import dataclasses

import torch

from cf_ref.injectivity import non_injectivity_index
from cf_ref.masks import block_causal_visibility, teacher_forcing_visibility
from cf_ref.recipes import PairTeacher
from full.data import SetKind, TensorSet
from full.distributed import Runner
from full.recipes import Stage
from full.stage_inputs import final_weights
from full.stages.models import base_model_dir, build_model, load_model
from full.stages.ode_pairs import teacher_map


def test_pairs_hold_the_trajectory_at_the_student_sigmas(run):
    pairs = TensorSet(f"{run.out}/ode-pairs", SetKind.ODE_PAIRS)
    assert pairs.meta["teacher"] == "ar" and set(pairs.fields) == {"states", "target", "text", "clean"}
    keep = run.schedule.student_sigmas()
    assert torch.allclose(torch.tensor(pairs.meta["sigmas"], dtype=torch.float64), keep)
    latents = TensorSet(run.data.latents)
    item = pairs.fetch([3])
    assert torch.equal(item["clean"], latents.fetch([3])["latents"])  # the ground-truth context of item 3
    # regenerating item 3 alone (another batch composition) gives the same pair: noise is seeded per item
    model = build_model(run, final_weights(run, Stage.AR_DIFFUSION), "AR teacher")
    text, clean = item["text"], item["clean"]
    traj = teacher_map(Runner(model), run, text, latents.negative[None], clean, keep)(item["states"][:, 0])
    torch.testing.assert_close(traj.states, item["states"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(traj.end, item["target"], rtol=1e-4, atol=1e-5)


def test_ar_teacher_pairs_are_injective_bidirectional_pairs_are_not(pretrained):
    """cf_ref's non-injectivity index of the pair maps, on the synthetic set: η = 0 for the AR teacher under
    clean context (the student sees its block's noise + the clean context) and η > 0 for the bidirectional
    model's pairs (the causal student sees the noise of blocks ≤ its own)."""
    config = pretrained
    f, b = config.video.latent_frames, config.model.block_size
    data = TensorSet(config.data.latents)
    batch = data.fetch(range(4))
    x0, text, negative = batch["latents"], batch["text"], data.negative[None].expand(4, -1, -1)
    runner = Runner(load_model(base_model_dir(config), "base"))
    eta = {}
    for teacher in PairTeacher:
        cfg = dataclasses.replace(config, ode_pairs=dataclasses.replace(config.ode_pairs, teacher=teacher))
        clean = x0 if teacher is PairTeacher.AR else None

        def pair_map(copies, cfg=cfg, clean=clean):
            n, m = copies.shape[:2]

            def rep(t):
                return t[:, None].expand(n, m, *t.shape[1:]).flatten(0, 1)

            ctx_clean = None if clean is None else rep(clean)
            traj = teacher_map(runner, cfg, rep(text), rep(negative), ctx_clean, None)(copies.flatten(0, 1))
            return traj.end.unflatten(0, (n, m))

        vis = teacher_forcing_visibility(f, b)[f:, f:] if teacher is PairTeacher.AR else block_causal_visibility(f, b)
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        eta[teacher] = non_injectivity_index(pair_map, eps, vis, 6, generator=torch.Generator().manual_seed(0))
    assert float(eta[PairTeacher.AR].abs().max()) < 1e-10
    hidden = eta[PairTeacher.BIDIRECTIONAL][: f - b]  # the last block sees every frame's noise
    assert float(hidden.min()) > 1e-4, eta
