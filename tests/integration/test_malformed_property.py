"""Property: whatever malformed command arrives, the answer is a 4xx result, the worker keeps
working, and nothing is written."""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import CATALOG, command
from worker.contract.imports import PARAMETERS
from worker.runtime.app import Worker
from worker.runtime.client import CommandClient
from worker.settings import Settings

FIELDS = set(CATALOG.databases[0].field_specs) | {"subscriptions"}
NOT_AN_INT = st.text(max_size=8).filter(lambda text: not re.fullmatch(r"\s*[+-]?\d+\s*", text))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _with(key: str, value: Any) -> dict[str, Any]:
    return {**command(), key: value}


def _with_data(key: str, value: Any) -> dict[str, Any]:
    return command(data={"_fname": "x", key: value})


MALFORMED = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=12)
    .filter(lambda key: key not in FIELDS)
    .flatmap(lambda key: JSON.map(lambda value: _with_data(key, value))),
    st.text(min_size=1, max_size=8)
    .map(lambda key: "$" + key)
    .flatmap(lambda key: JSON.map(lambda value: _with_data(key, value))),
    NOT_AN_INT.map(lambda text: _with_data("age", text)),
    JSON.filter(lambda value: not isinstance(value, int) or isinstance(value, bool)).map(
        lambda value: _with("account_id", value)
    ),
    st.sampled_from(["account_id", "db_id", "data", "email"]).map(
        lambda key: {k: v for k, v in command().items() if k != key}
    ),
    st.text(min_size=1, max_size=8)
    .filter(lambda key: key not in PARAMETERS)
    .flatmap(lambda key: JSON.map(lambda value: _with(key, value))),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=MALFORMED)
async def test_malformed_commands_get_4xx_and_write_nothing(
    client: CommandClient, settings: Settings, mongo: Any, worker: Worker, body: Any
) -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    await client.send(settings.import_queue, payload)
    result = await client.reply(timeout=20)
    assert 400 <= result["error"] < 500, (body, result)
    assert result["error_text"]
    assert await mongo.profiles.count_documents({}) == 0
