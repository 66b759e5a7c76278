"""Where the integration tests find a real RabbitMQ and a real MongoDB-wire server.

`AMQP_URL`/`MONGODB_URL` when set; else containers through testcontainers when a Docker engine
answers; else the tests fail and say how to start the services. They never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

HOW_TO_START = (
    "No RabbitMQ/MongoDB for the integration tests. Start them with `scripts/services.sh start` "
    "and export the AMQP_URL and MONGODB_URL it prints (or run `make test`), or make a Docker "
    "engine reachable for testcontainers."
)


@dataclass(frozen=True)
class ServiceUrls:
    amqp_url: str
    mongodb_url: str
    management_url: str
    """RabbitMQ's management HTTP API, for tests that need broker users of their own."""


def management_url(amqp_url: str) -> str:
    """`RABBITMQ_MANAGEMENT_URL`, or the management plugin's port on the broker's host."""
    return os.environ.get("RABBITMQ_MANAGEMENT_URL") or (
        f"http://{urlsplit(amqp_url).hostname or '127.0.0.1'}:15672"
    )


def _docker_available() -> bool:
    with suppress(Exception):
        import docker

        docker.from_env().ping()
        return True
    return False


@contextmanager
def service_urls() -> Iterator[ServiceUrls]:
    amqp_url, mongodb_url = os.environ.get("AMQP_URL"), os.environ.get("MONGODB_URL")
    if amqp_url and mongodb_url:
        yield ServiceUrls(amqp_url, mongodb_url, management_url(amqp_url))
        return
    if not _docker_available():
        raise RuntimeError(HOW_TO_START)
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    management = RabbitMqContainer("rabbitmq:4-management").with_exposed_ports(5672, 15672)
    with management as rabbit, MongoDbContainer("mongo:7") as mongo:
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        yield ServiceUrls(
            f"amqp://guest:guest@{host}:{port}/",
            mongo.get_connection_url(),
            f"http://{host}:{rabbit.get_exposed_port(15672)}",
        )
