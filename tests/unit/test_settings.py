from __future__ import annotations

import pytest

from worker.settings import Settings


def test_retry_delays_grow_exponentially() -> None:
    settings = Settings(retry_base_delay_ms=100, retry_backoff_factor=3)
    assert [settings.retry_delay_ms(n) for n in (1, 2, 3)] == [100, 300, 900]


def test_plain_service_urls_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://crm:secret@rabbit:5672/vh")
    monkeypatch.setenv("PW_BATCH_MAX_SIZE", "17")
    settings = Settings()
    assert settings.amqp_url == "amqp://crm:secret@rabbit:5672/vh"
    assert settings.broker_user == "crm"
    assert settings.batch_max_size == 17


def test_environment_of_settings_gives_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(batch_max_size=3, queue_type="quorum", shutdown_grace_seconds=1.5)
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
