"""Launched by test_distributed.py under ``torchrun --nproc_per_node 2``: two ``cf-ref full train`` commands in one
launch (the import cost is paid once) — the tiny preset with DDP, then Causal Forcing++ with FSDP2. The worker
owns the process group, so the commands leave it up between them."""

from __future__ import annotations

import faulthandler
import sys

from cf_ref.cli import main
from full.distributed import init_distributed, shutdown

if __name__ == "__main__":
    ddp_out, fsdp_out, *settings = sys.argv[1:]
    faulthandler.dump_traceback_later(150, exit=True)  # a hang shows where it is instead of a silent timeout
    ctx = init_distributed("cpu")
    common = ["full", "train", "--preset", "tiny", "--device", "cpu", *settings]
    main([*common, "--out", ddp_out, "parallel.strategy=ddp"], standalone_mode=False)
    main([*common, "--out", fsdp_out, "--recipe", "causal-forcing-pp", "parallel.strategy=fsdp"], standalone_mode=False)
    shutdown(ctx)
