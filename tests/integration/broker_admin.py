"""Broker users of a test's own, and what the broker counts in a queue, through RabbitMQ's
management HTTP API (a real broker)."""

from __future__ import annotations

import base64
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson


class BrokerAdmin:
    def __init__(self, management_url: str, amqp_url: str) -> None:
        parts = urlsplit(amqp_url)
        self._base = management_url.rstrip("/") + "/api"
        login = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}"
        self._authorization = "Basic " + base64.b64encode(login.encode()).decode()
        self._vhost = quote(unquote(parts.path[1:]) or "/", safe="")

    def add_user(self, name: str, password: str, *, configure: str, write: str, read: str) -> None:
        """A user with these permission patterns on the tests' virtual host."""
        self._call("PUT", f"/users/{name}", {"password": password, "tags": ""})
        permissions = {"configure": configure, "write": write, "read": read}
        self._call("PUT", f"/permissions/{self._vhost}/{name}", permissions)

    def delete_user(self, name: str) -> None:
        self._call("DELETE", f"/users/{name}", None)

    def queue(self, name: str) -> dict[str, Any]:
        """The queue as the management API shows it: `messages_ready`,
        `messages_unacknowledged`, `arguments`, … Counts lag the broker by up to its
        statistics interval (5 s by default)."""
        path = f"/queues/{self._vhost}/{quote(name, safe='')}"
        queue: dict[str, Any] = self._call("GET", path, None)
        return queue

    def _call(self, method: str, path: str, body: dict[str, str] | None) -> Any:
        request = urllib.request.Request(
            self._base + path,
            data=orjson.dumps(body) if body is not None else None,
            method=method,
            headers={"Authorization": self._authorization, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
        return orjson.loads(answer) if answer else None
