"""What RabbitMQ's management HTTP API adds to a passive declare: who consumes a queue (the
connection's own name and the consumer tag) and how many deliveries it holds unacked.

Three GETs with the standard library's `urllib`: an operator's command makes a handful of
requests, so it needs no HTTP client dependency. The API's statistics lag the broker by up to
its collection interval (5 s by default). Any failure to get them is `ManagementUnreachable`:
the caller shows what AMQP told it and leaves the rest unknown.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import orjson

from worker.settings import broker_addresses

MANAGEMENT_PORT = 15672
TIMEOUT_SECONDS = 5.0


class ManagementUnreachable(Exception):
    """The management API did not answer, refused the login, or answered something else."""


@dataclass(frozen=True)
class Consumer:
    connection: str
    """The connection's client-provided name (`PW_CONNECTION_NAME`), else its address."""
    tag: str
    active: bool
    """False for a consumer a single-active-consumer queue keeps waiting."""


@dataclass(frozen=True)
class Snapshot:
    """The management API's view of a virtual host's queues."""

    unacked: dict[str, int]
    consumers: dict[str, list[Consumer]]


def default_management_url(amqp_url: str) -> str:
    """The management plugin's port on the (first) broker's host (credentials come from the
    AMQP URL)."""
    first = broker_addresses(amqp_url)[0]
    return f"http://{urlsplit(first).hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/"


def snapshot(management_url: str, amqp_url: str, timeout: float = TIMEOUT_SECONDS) -> Snapshot:
    """Unacked counts and consumers of every queue in the AMQP URL's virtual host."""
    api = _Api(management_url, amqp_url, timeout)
    queues = api.get("queues", "?columns=name,messages_unacknowledged")
    connections = api.get("vhosts", "/connections?columns=name,user_provided_name")
    names = {c["name"]: c.get("user_provided_name") or c["name"] for c in connections}
    consumers: dict[str, list[Consumer]] = defaultdict(list)
    for consumer in api.get("consumers"):
        channel = consumer.get("channel_details") or {}
        connection = channel.get("connection_name", "?")
        consumers[consumer["queue"]["name"]].append(
            Consumer(
                connection=names.get(connection, connection),
                tag=consumer["consumer_tag"],
                active=consumer.get("active", True) is not False,
            )
        )
    unacked = {
        queue["name"]: int(queue["messages_unacknowledged"])
        for queue in queues
        if "messages_unacknowledged" in queue
    }
    return Snapshot(unacked=unacked, consumers=dict(consumers))


class _Api:
    def __init__(self, management_url: str, amqp_url: str, timeout: float) -> None:
        given, amqp = urlsplit(management_url), urlsplit(broker_addresses(amqp_url)[0])
        if given.scheme not in ("http", "https") or not given.hostname:
            raise ManagementUnreachable(f"'{management_url}' is not an http(s):// URL")
        user = given.username if given.username is not None else amqp.username or "guest"
        secret = given.password if given.password is not None else amqp.password or "guest"
        login = f"{unquote(user)}:{unquote(secret)}"
        self._authorization = "Basic " + base64.b64encode(login.encode()).decode()
        netloc = given.hostname + (f":{given.port}" if given.port else "")
        base = urlunsplit((given.scheme, netloc, given.path.rstrip("/"), "", ""))
        self._base = base + "/api"
        self._shown = urlunsplit((given.scheme, netloc, given.path, "", ""))
        self._vhost = quote(unquote(amqp.path[1:]) or "/", safe="")
        self._timeout = timeout

    def get(self, collection: str, tail: str = "") -> list[Any]:
        """`/api/<collection>/<vhost><tail>`, a JSON list."""
        url = f"{self._base}/{collection}/{self._vhost}{tail}"
        request = urllib.request.Request(url, headers={"Authorization": self._authorization})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ManagementUnreachable(f"{self._shown} answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ManagementUnreachable(f"{self._shown}: {reason}") from exc
        if not isinstance(answer, list):
            raise ManagementUnreachable(f"{self._shown} answered {type(answer).__name__}")
        return answer
