"""What a decided batch sends, by the type of each outcome, and the bytes of what it sends: the
JSON the contract describes (results with their nulls, events without them, query answers with
what their method sets)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tests.unit.harness import envelope
from worker.contract.common import ResultModel
from worker.contract.events import Event
from worker.contract.imports import ImportResult
from worker.contract.queries import QueryAnswer
from worker.domain.envelope import (
    Answered,
    Deferred,
    Envelope,
    Failed,
    GaveUp,
    Outcome,
    Refused,
    Replayed,
)
from worker.errors import InvalidCommand, NotFound
from worker.runtime.delivery import Delivery
from worker.runtime.publisher import Outgoing
from worker.runtime.replies import ATTEMPT_HEADER, REASON_HEADER, Replies
from worker.runtime.topology import Route
from worker.settings import Settings

ROUTE = Route("imports", "imports_result")
SETTINGS = Settings(retry_max_attempts=2)
RESULT = ImportResult(message_id="m1", profile_id="p1", created=True, db_id=10, account_id=1)
EVENT = Event(
    event="profile.created",
    occurred_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    account_id=1,
    profile_id="p1",
    changed_fields=["email"],
)


def failure(envelope: Envelope, code: int, text: str) -> ImportResult:
    return ImportResult(error=code, error_text=text, message_id=envelope.message_id)


def sent(outcome: Outcome, attempt: int = 0, reply_to: str | None = "caller") -> list[Outgoing]:
    delivery = Delivery(b"{}", 1, "m1", "c1", reply_to, None, {"x-custom": 1})
    command = envelope(b"{}", "m1", correlation_id="c1", reply_to=reply_to, attempt=attempt)
    replies = Replies(ROUTE, SETTINGS, failure)  # as the consumer does: give-up rule first
    return replies.messages([delivery], [command], [replies.given_up(command, outcome)])


def where(messages: list[Outgoing]) -> list[tuple[str, str]]:
    return [(message.exchange, message.routing_key) for message in messages]


def body(message: Outgoing) -> Any:
    return orjson.loads(message.body)


def test_an_answer_is_sent_with_its_events() -> None:
    messages = sent(Answered(RESULT, (EVENT,), "import:m1"))

    assert where(messages) == [("", "caller"), (SETTINGS.events_exchange, "profile.created")]
    assert messages[0].correlation_id == "c1"
    assert messages[0].body == orjson.dumps(RESULT.model_dump(mode="json"))
    assert body(messages[0])["feedback_id"] is None, "a result keeps its nulls"
    assert messages[1].body == (
        b'{"event":"profile.created","occurred_at":"2026-11-24T12:00:00.000000Z",'
        b'"account_id":1,"profile_id":"p1","changed_fields":["email"]}'
    )


def test_without_reply_to_the_answer_goes_to_the_result_queue() -> None:
    [answer] = sent(Answered(RESULT), reply_to=None)

    assert where([answer]) == [("", "imports_result")]


def test_a_refusal_is_answered_and_only_an_unparsable_body_is_dead_lettered() -> None:
    refused = ImportResult(error=404, error_text="not found", message_id="m1")

    kept = sent(Refused(NotFound("not found"), refused))
    dead = sent(Refused(InvalidCommand("body is not JSON"), refused, dead_letter=True))

    assert where(kept) == [("", "caller")]
    assert body(kept[0])["error"] == 404
    assert where(dead) == [("", "caller"), (SETTINGS.dead_letter_exchange, "imports")]
    assert dead[1].headers[REASON_HEADER] == "body is not JSON"
    assert dead[1].headers["x-custom"] == 1


def test_a_replayed_answer_is_sent_again_without_events() -> None:
    assert where(sent(Replayed(RESULT))) == [("", "caller")]


def test_a_failure_is_retried_until_the_budget_is_spent_then_answered_500() -> None:
    [retry] = sent(Failed("boom"), attempt=1)
    answer, dead = sent(Failed("boom"), attempt=2)

    assert (retry.routing_key, retry.headers[ATTEMPT_HEADER]) == ("imports.retry.2", 2)
    assert body(answer)["error"] == 500
    assert "after 3 attempts: boom" in body(answer)["error_text"]
    assert where([dead]) == [(SETTINGS.dead_letter_exchange, "imports")]


def test_a_deferred_command_sends_nothing_yet() -> None:
    """It is carried to the consumer's next batch, unacked, and keeps its place."""
    assert sent(Deferred("decided elsewhere"), attempt=1) == []


def test_a_command_given_up_on_is_answered_its_500_and_dead_lettered() -> None:
    failure = ResultModel(error=500, error_text="internal error after 3 attempts: boom")
    answer, dead = sent(GaveUp(failure, "internal error after 3 attempts: boom"), attempt=2)

    assert body(answer)["error"] == 500
    assert where([dead]) == [(SETTINGS.dead_letter_exchange, "imports")]
    assert dead.headers[REASON_HEADER] == "internal error after 3 attempts: boom"


def test_a_query_answer_carries_what_its_method_set() -> None:
    answer = QueryAnswer(error=0, error_text="ok", message_id="q1", data=[1], next_cursor=None)

    [message] = sent(Answered(answer))

    assert message.body == (
        b'{"error":0,"error_text":"ok","message_id":"q1","data":[1],"next_cursor":null}'
    )
