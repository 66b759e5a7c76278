"""Logging as JSON lines, and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "profile_worker_commands_total",
    "Commands answered, by queue and result code (replayed: answered from the dedup inbox).",
    ["queue", "code", "replayed"],
)
RETRIES = Counter(
    "profile_worker_retries_total", "Commands sent to a delayed retry queue.", ["queue"]
)
DEFERRED = Counter(
    "profile_worker_deferred_total",
    "Commands carried unacked into the next batch: an earlier command on their profile or "
    "relation comes first, or another process is deciding a copy of them.",
    ["queue"],
)
DEAD_LETTERS = Counter(
    "profile_worker_dead_letters_total", "Commands copied to <queue>.dead.", ["queue"]
)
PUBLISH_REFUSALS = Counter(
    "profile_worker_publish_refusals_total",
    "Published messages the broker refused (a negative confirm), e.g. results for a queue at "
    "its length limit; each is published again after a pause, its command held unacked.",
    ["exchange"],
)
BATCH_SECONDS = Histogram(
    "profile_worker_batch_seconds",
    "Time from a batch's first message to its ack.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "profile_worker_batch_size",
    "Messages per batch.",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
STORE_UP = Gauge("profile_worker_store_up", "1 while the database answers, 0 during an outage.")
BROKER_UP = Gauge("profile_worker_broker_up", "1 while connected to RabbitMQ.")
BROKER_ADDRESS = Gauge(
    "profile_worker_broker_address",
    "With several broker addresses: 1 for the one this process is connected to, 0 for the others.",
    ["address"],
)

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` keys (feedback_id, message_id, ...) become fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aio_pika", "aiormq", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # It logs each failed connect as an error; the worker's own reconnect warning says the same.
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)


PARTITIONS_OWNED = Gauge(
    "profile_worker_partitions_owned",
    "Partitions of a command queue this process consumes now (the broker keeps one consumer "
    "on each).",
    ["queue"],
)
PARTITION_HANDOFFS = Counter(
    "profile_worker_partition_handoffs_total",
    "Partitions this process took (a free one, or one handed over) or released (to balance, "
    "or when stopping).",
    ["queue", "change"],
)
REBALANCE_SECONDS = Histogram(
    "profile_worker_rebalance_seconds",
    "From a change in the number of live processes seen by this process to its share held "
    "and no partition left without a consumer.",
    ["queue"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60),
)
ROUTED = Counter(
    "profile_worker_routed_total",
    "Commands the routing stage of this process moved from a command queue to its partitions.",
    ["queue"],
)
ROUTING_BACKLOG = Gauge(
    "profile_worker_routing_backlog",
    "Commands ready in a command queue, waiting for the routing stage (as last seen).",
    ["queue"],
)
PARTITION_BACKLOG = Gauge(
    "profile_worker_partition_backlog",
    "Commands ready in a command queue's partitions, summed (as last seen).",
    ["queue"],
)
