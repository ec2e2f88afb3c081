"""Track-agnostic distillation objectives.

Every model here is a velocity field ``model(x, sigma) -> v`` with ``x: [B, F, *S]`` and per-frame
levels ``sigma: [B, F]`` (:data:`cf_ref.solvers.VelocityField`); conditioning (text, the clean
context of teacher forcing, guidance) is closed over by the caller. The toy track and the video DiT
call the same functions.

* :mod:`cf_ref.distill.ode` — ODE regression onto stored PF-ODE trajectories (CausVid / Self Forcing
  from a bidirectional teacher; Causal Forcing from an AR teacher).
* :mod:`cf_ref.distill.cd` — consistency distillation along a teacher's PF-ODE (Causal Forcing++).
* :mod:`cf_ref.distill.dmd` — distribution matching distillation: generator and critic objectives.
"""
