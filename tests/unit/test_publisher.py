"""How the publisher reads the broker's confirms of a batch: a refusal names exactly the
messages to publish again (so confirmed answers and events are never sent twice); anything else
than a confirm or a refusal is a lost broker, or a bug raised as it is."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from pamqp.commands import Basic

from worker.errors import BrokerUnavailable
from worker.runtime.publisher import Outgoing, PublishRefused, refused_messages

MESSAGES = [Outgoing(f"results.{n % 2}", b"{}", message_id=str(n)) for n in range(4)]


def nack() -> aiormq.exceptions.DeliveryError:
    return aiormq.exceptions.DeliveryError(None, Basic.Nack())


def test_every_confirm_acked_refuses_nothing() -> None:
    assert refused_messages(MESSAGES, [Basic.Ack()] * 4) == []


def test_negative_confirms_name_their_messages_in_order() -> None:
    confirms = [nack(), Basic.Ack(), nack(), nack()]
    refused = refused_messages(MESSAGES, confirms)
    assert [message.message_id for message in refused] == ["0", "2", "3"]


@pytest.mark.parametrize(
    "gone",
    [
        aiormq.exceptions.ChannelClosed(),
        aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"),
        aiormq.exceptions.ChannelInvalidStateError("closed"),
        ConnectionResetError(),
        asyncio.CancelledError(),
    ],
)
def test_a_lost_channel_is_broker_unavailable_even_beside_refusals(gone: BaseException) -> None:
    with pytest.raises(BrokerUnavailable):
        refused_messages(MESSAGES, [nack(), Basic.Ack(), gone, Basic.Ack()])


def test_a_returned_message_is_not_taken_for_a_refusal() -> None:
    with pytest.raises(BrokerUnavailable, match="did not confirm"):
        refused_messages(MESSAGES, [Basic.Ack(), object(), Basic.Ack(), Basic.Ack()])


def test_an_exception_that_is_not_the_brokers_is_raised_as_it_is() -> None:
    with pytest.raises(KeyError):
        refused_messages(MESSAGES, [Basic.Ack(), KeyError("bug"), Basic.Ack(), Basic.Ack()])


def test_a_refusal_says_how_many_of_how_many_and_where() -> None:
    refusal = PublishRefused(MESSAGES[1:], published=4)
    assert refusal.refused == tuple(MESSAGES[1:])
    assert "refused 3 of 4" in refusal.text
    assert "results.0, results.1" in refusal.text
