"""Readiness from its parts, and the HTTP port that reports it (a real server on loopback)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from worker.errors import ConfigurationError
from worker.observability import BROKER_UP, STORE_UP
from worker.runtime import health as health_module
from worker.runtime.endpoints import serve_endpoints
from worker.runtime.health import Health


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    health, port = Health(), free_port()
    server = serve_endpoints(port, health, host="127.0.0.1")
    assert server is not None
    yield health, port
    server.shutdown()
    server.server_close()


def ready_health() -> Health:
    health = Health(consumers_expected=3)
    health.broker(True, consumers=3)
    health.store(True)
    return health


def test_ready_only_with_broker_consumers_and_database() -> None:
    assert ready_health().ready()
    assert not Health().ready(), "nothing is known at start"
    store_down, broker_down, consumer_missing = ready_health(), ready_health(), ready_health()
    store_down.store(False)
    broker_down.broker(False)
    consumer_missing.broker(True, consumers=2)
    assert not any(h.ready() for h in (store_down, broker_down, consumer_missing))


def test_gauges_follow_the_health() -> None:
    health = Health()
    health.store(True)
    health.broker(True, consumers=1)
    assert STORE_UP._value.get() == 1
    assert BROKER_UP._value.get() == 1
    health.store(False)
    health.broker(False)
    assert STORE_UP._value.get() == 0
    assert BROKER_UP._value.get() == 0


def test_a_stalled_loop_is_not_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health()
    assert health.alive()
    monkeypatch.setattr(health_module, "LOOP_STALL_SECONDS", 0.0)
    assert not health.alive()


def test_endpoints_answer_over_http(served: tuple[Health, int]) -> None:
    health, port = served
    assert get(port, "/healthz") == (200, b'{"alive":true}')
    status, body = get(port, "/readyz")
    assert status == 503
    assert orjson.loads(body) == {
        "broker_connected": False,
        "consumers_running": False,
        "database_reachable": False,
        "partitions": {},
        "routing": [],
    }
    health.consumers_expected = 3
    health.broker(True, consumers=3)
    health.store(True)
    health.partitions, health.routing = {"database_import": [0, 3]}, ["database_import"]
    status, body = get(port, "/readyz")
    assert status == 200, "a process that holds partitions (or none) is ready"
    assert orjson.loads(body)["partitions"] == {"database_import": [0, 3]}
    assert orjson.loads(body)["routing"] == ["database_import"]
    status, metrics = get(port, "/metrics")
    assert status == 200
    assert b"profile_worker_store_up 1.0" in metrics
    assert get(port, "/nowhere")[0] == 404


def test_an_occupied_port_is_a_configuration_error(served: tuple[Health, int]) -> None:
    _, port = served
    with pytest.raises(ConfigurationError, match=f"metrics port {port} is already in use"):
        serve_endpoints(port, Health(), host="127.0.0.1")


def test_port_zero_serves_nothing() -> None:
    assert serve_endpoints(0, Health()) is None
