"""Opening a broker connection, with the refusals that retrying cannot mend told apart.

aiormq reports a wrong password, an unknown virtual host and a user without access to it in
three different shapes; the worker, the CLI and the producers' client all need the same two
answers: a `ConfigurationError` to stop on, or a `BrokerUnavailable` to retry.

With several addresses (the nodes of a cluster, `Settings.amqp_url`), each connect tries them
in turn, starting after the one the process reached last (kombu's round robin), so a node that
is gone costs one refused or timed-out attempt, and reconnects spread over the nodes. aio-pika
takes one URL per connect (its robust connection reconnects to that one), hence this loop.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection

from worker.errors import BrokerUnavailable, ConfigurationError
from worker.observability import BROKER_ADDRESS
from worker.settings import Settings, broker_addresses

log = logging.getLogger("worker.connection")

DEFAULT_TIMEOUT_SECONDS: float = Settings.model_fields["broker_connect_timeout_seconds"].default
"""For callers without settings (the producers' client, backfills): the setting's default."""

_reached: dict[str, int] = {}
"""Per address list, the position of the address last connected to in this process: the next
connect starts after it. One process-wide memory, since every caller of one list (the worker's
sessions, its CLI commands) wants the same rotation."""


async def connect(
    urls: str, name: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> AbstractRobustConnection:
    """A connection to the broker at `urls` (one address, or several tried in turn), named
    `name` in the management UI. A refused login or virtual host stops at once; when every
    address is unreachable, `BrokerUnavailable` names each one's reason."""
    addresses = broker_addresses(urls)
    start = (_reached[urls] + 1) % len(addresses) if urls in _reached else 0
    reasons = []
    for step in range(len(addresses)):
        position = (start + step) % len(addresses)
        try:
            connection = await _connect_one(addresses[position], name, timeout_seconds)
        except BrokerUnavailable as exc:
            reasons.append(str(exc))
            continue
        _reached[urls] = position
        _connected(connection, addresses, position)
        return connection
    if len(reasons) == 1:
        raise BrokerUnavailable(reasons[0])
    raise BrokerUnavailable(f"no broker address answered: {'; '.join(reasons)}")


def _connected(connection: AbstractRobustConnection, addresses: list[str], position: int) -> None:
    """Log and export which address (and cluster) the process is on, when there is a choice."""
    if len(addresses) == 1:
        return
    address = _address(addresses[position])
    properties = getattr(connection.transport, "connection", None)
    server = getattr(properties, "server_properties", None) or {}
    cluster = server.get("cluster_name")
    for other in addresses:
        BROKER_ADDRESS.labels(_address(other)).set(1 if _address(other) == address else 0)
    log.info(
        "broker connected",
        extra={"address": address, "position": position + 1, "cluster": cluster},
    )


async def _connect_one(url: str, name: str, timeout_seconds: float) -> AbstractRobustConnection:
    try:
        connection = await aio_pika.connect(
            url, client_properties={"connection_name": name}, timeout=timeout_seconds
        )
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        raise ConfigurationError(
            f"the broker at {_address(url)} refused the login of user '{_user(url)}': "
            "wrong user name or password"
        ) from exc
    except aiormq.exceptions.InvalidFrameError as exc:
        if "Connection.Close" not in str(exc):
            raise BrokerUnavailable(f"broker at {_address(url)}: {exc}") from exc
        raise ConfigurationError(
            f"the broker at {_address(url)} refused virtual host '{_vhost(url)}' to user "
            f"'{_user(url)}': it does not exist or the user has no permission on it"
        ) from exc
    except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(f"broker unreachable at {_address(url)}: {_reason(exc)}") from exc
    except StopAsyncIteration as exc:  # aiormq's reader, when a connection is cut mid-handshake
        raise BrokerUnavailable(f"broker at {_address(url)} closed the connection") from exc
    return connection  # type: ignore[return-value]


def refused_access(exc: BaseException, urls: str) -> ConfigurationError | None:
    """The configuration error behind a channel closed for lack of permission, if it was."""
    url = broker_addresses(urls)[0]
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return ConfigurationError(
            f"the broker refused user '{_user(url)}' access: {_reason(exc)}; "
            "grant it configure, write and read permissions on the worker's queues and exchanges"
        )
    return None


def _reason(exc: BaseException) -> str:
    args = [str(arg) for arg in exc.args if not isinstance(arg, int)]
    return "; ".join(args) or type(exc).__name__


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


def _user(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def _vhost(url: str) -> str:
    return unquote(urlsplit(url).path[1:]) or "/"
