"""``cf-ref full plan``: memory and FLOPs of every stage step at real size, by simulation on the CPU.

One idea per module: :mod:`~full.plan.gpus` (named GPUs and their spec-sheet figures),
:mod:`~full.plan.architectures` (the architecture of a configured model folder, loaded or not),
:mod:`~full.plan.flops` (``FlopCounterMode``, bytes, and the analytic count), :mod:`~full.plan.memory` (fake
tensors, fake ranks, the memory tracker), :mod:`~full.plan.stages` (one step of each stage on fake models through
the stages' own code), :mod:`~full.plan.simulate` (every step on ``N`` ranks), :mod:`~full.plan.roofline` (time on
a GPU at an assumed MFU), :mod:`~full.plan.report` (table, JSON, what to change), :mod:`~full.plan.planner`
(configuration → plan).
"""
