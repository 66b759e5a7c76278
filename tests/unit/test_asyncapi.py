"""The AsyncAPI document: committed as generated, valid against the official AsyncAPI 3.0.0
JSON Schema, complete for SPEC §2, §3 and §7, and true of the messages the worker sends."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.support import TOKEN, strings_under
from tests.unit.harness import (
    World,
    envelope,
    events_of,
    import_command,
    relation_command,
    result_of,
    run,
)
from worker.asyncapi import asyncapi_document
from worker.asyncapi.flows import flows
from worker.asyncapi.names import title
from worker.asyncapi.partitions import EXAMPLE_PARTITIONS, example
from worker.asyncapi.schemas import ERROR_CODES, EVENTS
from worker.cli.asyncapi import DocumentFormat, asyncapi, render
from worker.domain import order
from worker.domain.envelope import Outcome
from worker.errors import WorkerError
from worker.runtime.partitions import Partitions
from worker.runtime.topology import command_routes, routes, topology_names
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SPEC_CODES = [0, 400, 401, 402, 403, 404, 409, 435, 500]


def defaults() -> Settings:
    """The settings' defaults, whatever the environment says (the services set AMQP_URL)."""
    return Settings.model_construct()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(defaults())


@pytest.fixture(scope="module")
def asyncapi_schema() -> Draft7Validator:
    """The official schema; every `$ref` (by `$id`) resolves inside it, nothing is fetched."""
    script = ROOT / "scripts" / "asyncapi-schema.sh"
    done = subprocess.run([script], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"{script.name} could not provide the AsyncAPI schema:\n{done.stderr}")
    schema = json.loads(Path(done.stdout.strip()).read_text())
    resource = Resource.from_contents(schema, default_specification=DRAFT7)
    registry: Registry[Any] = Registry().with_resource(schema["$id"], resource).crawl()
    return Draft7Validator(schema, registry=registry)


def test_the_committed_document_is_the_generated_one() -> None:
    generated = render(asyncapi_document(defaults()), DocumentFormat.yaml)
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/asyncapi.yaml is stale: run `profile-worker asyncapi --output docs/asyncapi.yaml`"
    )


def test_the_command_writes_json_or_prints_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "asyncapi.json"
    expected = asyncapi_document(Settings())  # the command reads the environment too

    asyncapi(output=output, document_format=DocumentFormat.json)
    asyncapi(output=None, document_format=DocumentFormat.yaml)

    assert json.loads(output.read_text()) == expected
    assert yaml.safe_load(capsys.readouterr().out) == expected


@pytest.mark.parametrize(
    "settings",
    [
        defaults(),
        Settings.model_construct(retry_max_attempts=0, import_queue="imports"),
        Settings.model_construct(partitions=4),
    ],
    ids=["defaults", "no-retries-renamed-queue", "four-partitions"],
)
def test_the_document_is_valid_asyncapi_3(
    settings: Settings, asyncapi_schema: Draft7Validator
) -> None:
    document = asyncapi_document(settings)

    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in asyncapi_schema.iter_errors(document)
    ]
    assert errors == []
    assert list(_refs(document))
    for ref in _refs(document):
        _resolve(document, ref)


def _invalid_action(document: dict[str, Any]) -> None:
    document["operations"]["receiveImportCommands"]["action"] = "publish"


def _operation_without_channel(document: dict[str, Any]) -> None:
    del document["operations"]["sendImportResults"]["channel"]


def _payload_that_is_not_a_schema(document: dict[str, Any]) -> None:
    document["components"]["messages"]["importCommand"]["payload"] = "ImportCommand"


def _schema_with_an_unknown_type(document: dict[str, Any]) -> None:
    """Checked only through the draft-07 meta-schema the AsyncAPI schema refers to."""
    document["components"]["schemas"]["Error"]["type"] = "struct"


def _amqp_binding_of_an_unknown_kind(document: dict[str, Any]) -> None:
    """Checked only through the AMQP binding schema, also reached by `$id`."""
    document["channels"]["importCommands"]["bindings"]["amqp"]["is"] = "topic"


@pytest.mark.parametrize(
    "breaks",
    [
        _invalid_action,
        _operation_without_channel,
        _payload_that_is_not_a_schema,
        _schema_with_an_unknown_type,
        _amqp_binding_of_an_unknown_kind,
    ],
)
def test_a_broken_document_is_refused(
    document: dict[str, Any],
    asyncapi_schema: Draft7Validator,
    breaks: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(document)
    breaks(broken)

    assert not asyncapi_schema.is_valid(broken)


def test_every_queue_of_the_settings_is_a_channel(document: dict[str, Any]) -> None:
    settings = defaults()
    addresses = {channel["address"] for channel in document["channels"].values()}
    queues = {
        getattr(settings, name) for name in type(settings).model_fields if name.endswith("_queue")
    }

    assert queues == {
        settings.import_queue,
        settings.import_result_queue,
        settings.relations_queue,
        settings.relations_result_queue,
        settings.relations_query_queue,
    }
    assert queues <= addresses
    assert {route.dead_queue for route in routes(settings)} <= addresses
    retries = {f"{route.queue}.retry.{{attempt}}" for route in routes(settings)}
    assert retries <= addresses
    assert set(EVENTS) <= addresses


def test_the_documented_routes_are_the_declared_ones(document: dict[str, Any]) -> None:
    settings = defaults()
    assert [flow.route for flow in flows(settings)] == routes(settings)
    [retries] = [
        channel
        for channel in document["channels"].values()
        if channel["address"] == f"{settings.import_queue}.retry.{{attempt}}"
    ]
    attempts = retries["parameters"]["attempt"]["enum"]
    assert attempts == [str(n) for n in range(1, settings.retry_max_attempts + 1)]


@pytest.mark.parametrize("count", [1, 4])
def test_the_partitions_are_documented_as_they_are_declared(count: int) -> None:
    settings = Settings.model_construct(partitions=count, import_queue="imports")
    document = asyncapi_document(settings)
    queues, exchanges = topology_names(settings.model_copy(update={"partitions": 4}))
    commands = [flow for flow in flows(settings) if flow.order]
    assert [flow.route for flow in commands] == command_routes(settings)
    for flow in commands:
        partitions = Partitions(flow.route.queue, 4)
        exchange = document["channels"][flow.partitions_id]
        assert exchange["bindings"]["amqp"]["exchange"]["name"] == partitions.exchange
        assert partitions.exchange in exchanges
        for member in (partitions.members, partitions.hungry):
            assert member in exchange["description"]
        assert flow.order is not None
        shown = count if count > 1 else EXAMPLE_PARTITIONS
        body, key = example(flow.order, shown)
        assert order.order_key_of(flow.order, body, len(body)) is not None
        assert exchange["parameters"]["partitionKey"]["examples"] == [
            order.routing_key(flow.order, body, shown)
        ]
        assert f"routing key `{key}`" in exchange["parameters"]["partitionKey"]["description"]
        assert set(exchange["messages"]) == set(flow.commands)
        queue = document["channels"][flow.partition_queues_id]
        enum = queue["parameters"]["partition"].get("enum")
        assert enum == ([str(index) for index in range(count)] if count > 1 else None)
        names = [queue["address"].format(partition=index) for index in range(4)]
        assert names == partitions.names
        assert set(names) <= set(queues)
        operations = document["operations"]
        routed = operations[f"send{title(flow.key)}ToPartitions"]
        assert routed["channel"] == {"$ref": f"#/channels/{flow.partitions_id}"}
        taken = operations[f"receive{title(flow.key)}PartitionCommands"]
        assert taken["channel"] == {"$ref": f"#/channels/{flow.partition_queues_id}"}
        assert taken["reply"]["channel"] == {"$ref": f"#/channels/{flow.answers_id}"}


def test_the_events_are_on_the_topic_exchange(document: dict[str, Any]) -> None:
    for routing_key in EVENTS:
        [channel] = [c for c in document["channels"].values() if c["address"] == routing_key]
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert (exchange["name"], exchange["type"], exchange["durable"]) == (
            "profile_events",
            "topic",
            True,
        )


def test_every_command_result_and_event_model_is_a_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    payload_refs = set(_refs(document["components"]["messages"]))

    for model in (
        "ImportCommand",
        "FlatImportCommand",
        "RelationCommand",
        "RelationQuery",
        "ImportResult",
        "RelationResult",
        "QueryAnswer",
        "Event",
    ):
        assert model in schemas
        assert f"#/components/schemas/{model}" in payload_refs


def test_the_error_schema_has_every_code_of_spec_3(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    codes = schemas["ErrorCode"]["enum"]

    assert codes == SPEC_CODES
    assert set(_codes_of(WorkerError)) <= set(codes)
    assert len(schemas["ErrorCode"]["x-enum-descriptions"]) == len(codes)
    assert schemas["Error"]["required"] == ["error", "error_text"]
    assert list(ERROR_CODES) == SPEC_CODES


def test_the_query_is_a_request_answered_to_its_reply_to(document: dict[str, Any]) -> None:
    operation = document["operations"]["receiveQueryRequests"]
    query = document["components"]["messages"]["relationQuery"]
    properties = _resolve(document, query["headers"]["$ref"])

    assert operation["action"] == "receive"
    assert operation["reply"]["address"]["location"] == "$message.header#/reply_to"
    assert _resolve(document, operation["reply"]["channel"]["$ref"])["address"] is None
    assert set(properties["required"]) == {"reply_to", "correlation_id"}


def test_what_the_worker_sends_is_persistent(document: dict[str, Any]) -> None:
    for name, operation in document["operations"].items():
        amqp = operation["bindings"]["amqp"]
        if operation["action"] == "send":
            assert amqp["deliveryMode"] == 2, name
        else:
            assert amqp["ack"] is True, name


async def test_the_messages_the_worker_sends_match_the_document(
    world: World, document: dict[str, Any]
) -> None:
    outcomes = await _one_of_each(world)
    sent = [(_answer_channel(o), result_of(o)) for o in outcomes if result_of(o)]
    sent += [(event["event"], event) for o in outcomes for event in events_of(o)]

    assert {event["event"] for _, event in sent if "event" in event} == set(EVENTS)
    codes = {(address, answer["error"]) for address, answer in sent if "error" in answer}
    assert {
        (address, 0) for address in ("database_import_result", "relations_result", None)
    } <= codes
    assert {("database_import_result", 400), ("relations_result", 409), (None, 404)} <= codes
    for address, body in sent:
        for message in _messages_at(document, address):
            errors = list(_payload_validator(document, message).iter_errors(body))
            assert errors == [], f"{message} does not describe {body}: {errors[0].message}"


async def _one_of_each(world: World) -> list[Outcome]:
    """Every event kind, and successes and refusals of each command kind."""
    subscription = {"resource_id": 100, "channel": "email", "email": "ada@example.com"}
    created = import_command(
        data={"_fname": "Ada", "subscriptions": [subscription]}, trigger_id=1, workflow_id=2
    )
    imports = [created, import_command(data={"city": "Oslo"}), import_command(data={"x": 1})]
    outcomes = await run(world.imports(), [envelope(body) for body in imports])
    a = result_of(outcomes[0])["profile_id"]
    b = await world.profile_id("shop@example.com", db_id=11)
    relations = [
        relation_command("attach", a, b, weights={"weight": 1}),
        relation_command("attach", a, b, weights={"weight": 1}),
        relation_command("strengthen", a, b, weights={"weight": 2}),
        relation_command("detach", a, b),
    ]
    for body in relations:
        outcomes += await run(world.relations(), [envelope(body)])
    queries = [
        {"method": "get", "account_id": 1, "rel_id": 500, "profile_id": a},
        {"method": "single", "account_id": 1, "relation_id": 999_999},
        {"method": "single", "account_id": 1},
    ]
    for query in ({**query, "token": TOKEN} for query in queries):
        outcomes += await run(world.queries(), [envelope(query, reply_to="caller")])
    return outcomes


def _answer_channel(outcome: Outcome) -> str | None:
    """The address of the channel the answer is on; None for a query's reply-to."""
    answer = result_of(outcome)
    if "action" in answer:
        return "relations_result"
    return "database_import_result" if "matching_field" in answer else None


def _messages_at(document: dict[str, Any], address: str | None) -> list[str]:
    [channel] = [c for c in document["channels"].values() if c["address"] == address]
    return list(channel["messages"])


def _payload_validator(document: dict[str, Any], message: str) -> Draft7Validator:
    """The message's payload schema, its `#/components/...` refs resolved in the document."""
    schema = {"$ref": f"#/components/messages/{message}/payload", **document}
    return Draft7Validator(schema)


def _refs(node: Any) -> Iterator[str]:
    return strings_under(node, frozenset({"$ref"}))


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _codes_of(error: type[WorkerError]) -> Iterator[int]:
    yield error.code
    for subclass in error.__subclasses__():
        yield from _codes_of(subclass)
