from __future__ import annotations

import pytest

from worker.runtime.topology import result_queue_arguments
from worker.settings import Settings, broker_addresses, redacted


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


def test_an_unset_optional_setting_stays_unset_in_a_spawned_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for limit in (None, 1_000):
        original = Settings(result_queue_max_length=limit)
        environment = original.as_environment()
        assert ("PW_RESULT_QUEUE_MAX_LENGTH" in environment) is (limit is not None)
        monkeypatch.delenv("PW_RESULT_QUEUE_MAX_LENGTH", raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert Settings() == original


def test_result_queues_keep_the_arguments_they_always_had_unless_a_limit_is_set() -> None:
    """A queue's arguments cannot change once declared (PRECONDITION_FAILED): the default
    must declare exactly what deployments before the setting declared."""
    assert result_queue_arguments(Settings()) == {
        "x-queue-type": "classic",
        "x-message-ttl": 86_400_000,
    }
    limited = Settings(result_queue_max_length=1_000, queue_type="quorum")
    assert result_queue_arguments(limited) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 86_400_000,
        "x-max-length": 1_000,
        "x-overflow": "reject-publish",
    }


def test_a_result_queue_holds_at_least_one_result() -> None:
    with pytest.raises(ValueError, match="result_queue_max_length"):
        Settings(result_queue_max_length=0)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("amqp_url", "not-a-url"),
        ("amqp_url", "http://rabbit:5672/"),
        ("amqp_url", "amqp:///vhost"),
        ("mongodb_url", "http://mongo:27017/"),
        ("mongodb_url", "localhost:27017"),
    ],
)
def test_service_urls_need_their_scheme_and_a_host(name: str, url: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        Settings.model_validate({name: url})


@pytest.mark.parametrize(
    "url", ["amqps://u:p@rabbit:5671/vh", "mongodb+srv://u:p@cluster.example.com/?tls=true"]
)
def test_tls_urls_are_accepted(url: str) -> None:
    field = "amqp_url" if url.startswith("amqp") else "mongodb_url"
    assert getattr(Settings.model_validate({field: url}), field) == url


@pytest.mark.parametrize("separator", [",", ";", " , "])
def test_several_broker_addresses_are_one_setting(separator: str) -> None:
    urls = separator.join(["amqp://crm:s@rabbit-1:5672/vh", "amqp://crm:s@rabbit-2:5673/vh"])
    settings = Settings(amqp_url=urls)

    assert broker_addresses(settings.amqp_url) == [
        "amqp://crm:s@rabbit-1:5672/vh",
        "amqp://crm:s@rabbit-2:5673/vh",
    ]
    assert settings.broker_user == "crm"
    assert redacted(settings.amqp_url) == (
        "amqp://crm:***@rabbit-1:5672/vh,amqp://crm:***@rabbit-2:5673/vh"
    )


def test_a_bad_address_in_a_list_is_named_by_its_place() -> None:
    with pytest.raises(ValueError, match="address 3 of 3: expected amqp://host"):
        Settings(amqp_url="amqp://a/,amqp://b/,b:5672")


def test_every_broker_address_logs_in_as_one_user() -> None:
    """The worker vouches for producers by its own user_id: one user, whichever node."""
    with pytest.raises(ValueError, match="one user"):
        Settings(amqp_url="amqp://crm:s@rabbit-1/,amqp://other:s@rabbit-2/")


def test_a_mongodb_host_list_is_not_split_when_redacted() -> None:
    url = "mongodb://u:pw@m1:27017,m2:27017/?replicaSet=rs0"
    assert redacted(url) == "mongodb://u:***@m1:27017,m2:27017/?replicaSet=rs0"


def test_redacted_urls_hide_only_the_password() -> None:
    assert redacted("amqp://crm:hunter2-secret@rabbit/") == "amqp://crm:***@rabbit/"
    assert redacted("mongodb://mongo:27017/") == "mongodb://mongo:27017/"


def test_the_management_api_is_looked_for_on_the_first_broker() -> None:
    from worker.cli.management import default_management_url

    listed = "amqp://u:p@rabbit-1:5672/,amqp://u:p@rabbit-2:5672/"
    assert default_management_url(listed) == "http://rabbit-1:15672/"
