"""Where the integration tests find a real RabbitMQ and a real MongoDB-wire server.

`AMQP_URL`/`MONGODB_URL` when set; else containers through testcontainers when a Docker engine
answers; else the tests fail and say how to start the services. They never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

HOW_TO_START = (
    "No RabbitMQ/MongoDB for the integration tests. Start them with `scripts/services.sh start` "
    "and export the AMQP_URL and MONGODB_URL it prints (or run `make test`), or make a Docker "
    "engine reachable for testcontainers."
)


@dataclass(frozen=True)
class ServiceUrls:
    amqp_url: str
    mongodb_url: str


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
        yield ServiceUrls(amqp_url, mongodb_url)
        return
    if not _docker_available():
        raise RuntimeError(HOW_TO_START)
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:4-management") as rabbit, MongoDbContainer("mongo:7") as mongo:
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        yield ServiceUrls(f"amqp://guest:guest@{host}:{port}/", mongo.get_connection_url())
