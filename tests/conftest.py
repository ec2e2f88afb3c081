"""Shared test settings: a fast hypothesis profile (the whole suite must stay well under 10 minutes on 2 cores)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cf-ref", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("cf-ref")
