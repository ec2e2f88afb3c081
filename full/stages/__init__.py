"""The stages of the full track, one small module each; every one is a function of the configuration.

* :mod:`~full.stages.ar_diffusion` — ``plan``: the AR teacher by teacher forcing (or diffusion forcing);
* :mod:`~full.stages.ode_pairs` — ``make_pairs``: PF-ODE pairs of the AR teacher (or the bidirectional model);
* :mod:`~full.stages.ode` — ``plan``: ODE regression of the few-step student;
* :mod:`~full.stages.cd` — ``plan``: causal consistency distillation;
* :mod:`~full.stages.dmd` — ``plan``: asymmetric DMD with self-forcing rollout (or CausVid's data context);
* :mod:`~full.stages.base` — the tiny preset's synthetic set and base model.

A ``plan`` returns a :class:`full.train.StagePlan` (the modules it trains and the losses of each step);
:func:`full.train.run_stage` runs it. What the stages share, one job per module: :mod:`~full.stages.models`
(loading, trainable and frozen wrappers), :mod:`~full.stages.fields` (velocity fields, CFG, the KV-cache adapter),
:mod:`~full.stages.batches` (a stage's set and batches), :mod:`~full.stages.randomness` (per-micro-batch
generators), :mod:`~full.stages.previews` (sample videos during training).
"""
