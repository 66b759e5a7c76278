"""Test-wide settings: Hypothesis runs without wall-clock deadlines (shared 2-core machines)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "profile-worker", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("profile-worker")
