"""The stages of the full track, one small module each; every one is a function of the configuration.

* :mod:`~full.stages.ar_diffusion` — ``plan``: the AR teacher by teacher forcing (or diffusion forcing);
* :mod:`~full.stages.ode_pairs` — ``make_pairs``: PF-ODE pairs of the AR teacher (or the bidirectional model);
* :mod:`~full.stages.ode` — ``plan``: ODE regression of the few-step student;
* :mod:`~full.stages.cd` — ``plan``: causal consistency distillation;
* :mod:`~full.stages.dmd` — ``plan``: asymmetric DMD with self-forcing rollout.

A ``plan`` returns a :class:`full.train.StagePlan` (the modules it trains and the losses of each step);
:func:`full.train.run_stage` runs it. Shared pieces are in :mod:`~full.stages.common`.
"""
