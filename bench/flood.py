"""A flood, by hand (issue 10): N import commands queued before a worker process starts, then
drained by it, with its memory sampled and every answer checked.

    python -m bench.flood --commands 1000000
    python -m bench.flood --commands 100000 --slow-results --result-queue-max-length 1000 \\
        --results-per-second 300

The commands (tests/integration/flood.py: 70 % creations, 30 % `incr`s of earlier profiles by
email or `loyalty_id`, each with a message id) are published with pipelined confirms into the
run's own command queue; only then does a `python -m worker run` process start. While it
drains, its RSS is sampled from /proc (VmRSS, VmHWM), the broker's count of its unacked
commands is read from the management API, and the result queue is read concurrently; every
second the worker's acked commands (its metrics) are compared with the results the broker
took so far (read + still queued): a command acked before its result was confirmed would
show as more acked than taken. At the end: every message id answered exactly once, all
successes, and the database holding exactly the profiles and ages the commands make.

`--slow-results` declares the result queue with a length limit (`PW_RESULT_QUEUE_MAX_LENGTH`,
`x-overflow: reject-publish`) and reads it at a fixed, slow rate: the queue sits at its limit,
the worker's publishes are refused and retried (`profile_worker_publish_refusals_total`), and
nothing may be lost. The worker's log goes to a file, named at the end.

Needs the services (`scripts/services.sh start`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import uvloop
from pymongo import AsyncMongoClient

from tests.integration.broker_admin import BrokerAdmin
from tests.integration.conftest import (
    CATALOG,
    delete_topology,
    isolated_settings,
    worker_environment,
)
from tests.integration.flood import (
    Answers,
    Effects,
    publish_queued,
    read_results,
    rss_mib,
    stopped,
    stored_effects,
)
from tests.integration.services import service_urls
from worker.runtime.topology import declare
from worker.settings import Settings
from worker.store.mongo import MongoStore

CONSUMED_QUEUES = 3
"""Queues a worker process consumes (imports, relations, queries), each with its prefetch."""


@dataclass
class Watch:
    """What the monitor saw while the worker drained."""

    peak_rss_mib: float = 0.0
    max_unacked: int = 0
    max_result_depth: int = 0
    samples_at_limit: int = 0
    checks: int = 0
    early_acks: list[str] = field(default_factory=list)
    acked: float = 0.0
    refusals: float = 0.0
    slack: int = 0
    """Results that may be on their way to a consuming reader, unseen (its prefetch)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int, queue: str) -> tuple[float, float]:
    """The worker's commands acked on `queue` and results refused so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    acked = refused = 0.0
    for line in text.splitlines():
        if line.startswith("profile_worker_commands_total{") and f'queue="{queue}"' in line:
            acked += float(line.rsplit(" ", 1)[1])
        elif line.startswith("profile_worker_publish_refusals_total{"):
            refused += float(line.rsplit(" ", 1)[1])
    return acked, refused


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def check_acks(
    port: int,
    settings: Settings,
    channel: aio_pika.abc.AbstractChannel,
    answers: Answers,
    watch: Watch,
) -> None:
    """Acked commands (sampled first) may never exceed the results the broker took (sampled
    after): those read plus those queued, plus up to `watch.slack` on their way to a
    consuming reader (0 for the slow reader, which holds `answers.reading` around each get)."""
    async with answers.reading:
        acked, watch.refusals = await asyncio.to_thread(scrape, port, settings.import_queue)
        taken = answers.received + await depth(channel, settings.import_result_queue)
    watch.acked = acked
    watch.checks += 1
    if acked > taken + watch.slack:
        watch.early_acks.append(f"{acked:.0f} acked > {taken} results taken + {watch.slack}")


async def monitor(
    pid: int,
    port: int,
    settings: Settings,
    channel: aio_pika.abc.AbstractChannel,
    answers: Answers,
    admin: BrokerAdmin,
    watch: Watch,
) -> None:
    """Sample RSS, unacked commands, result depth and the ack-after-confirm check, and print
    progress every ten seconds, until cancelled."""
    started = last_print = time.perf_counter()
    last_answered = 0
    limit = settings.result_queue_max_length
    while True:
        rss, _ = rss_mib(pid)
        watch.peak_rss_mib = max(watch.peak_rss_mib, rss)
        with contextlib.suppress(OSError):  # the worker's metrics endpoint may not be up yet
            await check_acks(port, settings, channel, answers, watch)
        results = await depth(channel, settings.import_result_queue)
        watch.max_result_depth = max(watch.max_result_depth, results)
        watch.samples_at_limit += results == limit
        queue = await asyncio.to_thread(admin.queue, settings.import_queue)
        watch.max_unacked = max(watch.max_unacked, int(queue.get("messages_unacknowledged", 0)))
        now = time.perf_counter()
        if now - last_print >= 10:
            rate = (answers.answered - last_answered) / (now - last_print)
            print(
                f"  {now - started:6.0f} s  answered {answers.answered:>9,}  {rate:6.0f}/s  "
                f"RSS {rss:5.1f} MiB  results queued {results:>6}  refused {watch.refusals:.0f}",
                flush=True,
            )
            last_print, last_answered = now, answers.answered
        await asyncio.sleep(1.0)


async def drain(
    settings: Settings,
    admin: BrokerAdmin,
    run: str,
    count: int,
    per_second: float | None,
    log: Path,
) -> tuple[Answers, Watch, float, float]:
    """Start the worker on the queued commands and read every result; the answers, what the
    monitor saw, the seconds from the worker's start to the last result, and peak RSS."""
    port = free_port()
    env = worker_environment(settings, metrics_port=port)
    connection = await aio_pika.connect(settings.amqp_url)
    answers, watch = Answers(run, count), Watch()
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=env, stderr=stderr
        )
    started = time.perf_counter()
    channel = await connection.channel()
    prefetch = 1_000
    watch.slack = 0 if per_second is not None else prefetch
    watching = asyncio.create_task(
        monitor(process.pid, port, settings, channel, answers, admin, watch)
    )
    try:
        reading = asyncio.create_task(
            read_results(
                settings.amqp_url,
                settings.import_result_queue,
                answers,
                per_second=per_second,
                prefetch=prefetch,
                idle_seconds=300,
            )
        )
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({reading, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()
            raise SystemExit(f"the worker exited with {process.returncode}: see {log}")
        exited.cancel()
        reading.result()
        await asyncio.sleep(1.5)  # the last batch's ack and metrics, for the final figures
        watch.acked, watch.refusals = await asyncio.to_thread(scrape, port, settings.import_queue)
        _, peak = rss_mib(process.pid)
    finally:
        await stopped(process, watching)
        await connection.close()
    return answers, watch, answers.last_at - started, peak


async def remove(settings: Settings, store: MongoStore) -> None:
    """The run's queues, exchanges and database."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        await delete_topology(connection, settings)
    await store.drop(settings.mongodb_database)
    await store.close()


def report(
    settings: Settings,
    count: int,
    publish_rate: float,
    answers: Answers,
    watch: Watch,
    seconds: float,
    peak: float,
    effects: tuple[Effects, Effects, float],
) -> int:
    """Print the figures; the number of failed checks."""
    stored, expected, check_seconds = effects
    limit = settings.result_queue_max_length
    duplicates, missing = answers.duplicates, len(answers.missing)
    errors = sum(n for code, n in answers.codes.items() if code != 0)
    prefetch = settings.prefetch_count
    first_to_last = answers.last_at - answers.first_at
    rows = [
        ("commands", f"{count:,} (queued before the worker started)"),
        ("mongodb", settings.mongodb_url),
        ("published", f"{publish_rate:,.0f} cmd/s (pipelined confirms)"),
        ("drain", f"{seconds:,.1f} s from the worker's start to the last result"),
        ("drain rate", f"{count / seconds:,.0f} cmd/s ({(count - 1) / first_to_last:,.0f} "
                       "from the first result to the last)"),
        ("peak RSS", f"{peak:.1f} MiB (VmHWM; VmRSS sampled each second: "
                     f"max {watch.peak_rss_mib:.1f})"),
        ("prefetch bound", f"{prefetch} x {CONSUMED_QUEUES} queues = "
                           f"{prefetch * CONSUMED_QUEUES} unacked commands at most; the broker "
                           f"showed at most {watch.max_unacked} on the import queue"),
        ("batch size", f"{settings.batch_max_size}"),
        ("result queue limit", f"{limit or 'none'}; deepest {watch.max_result_depth:,}, "
                               f"at the limit in {watch.samples_at_limit} samples"),
        ("results refused", f"{watch.refusals:,.0f} (profile_worker_publish_refusals_total: "
                            "each published again)"),
        ("acks checked", f"{watch.checks} times acked <= results taken"
                         f"{f' + {watch.slack} in flight to the reader' if watch.slack else ''}; "
                         f"violations {len(watch.early_acks)}"),
        ("answered", f"{answers.answered:,} (duplicates {duplicates}, "
                     f"foreign {answers.foreign}, lost {missing})"),
        ("answer codes", f"{dict(answers.codes)}"),
        ("worker acked", f"{watch.acked:,.0f}"),
        ("profiles", f"{stored.profiles:,} (expected {expected.profiles:,})"),
        ("sum of ages", f"{stored.age_sum:,} (expected {expected.age_sum:,}; "
                        f"read in {check_seconds:.1f} s)"),
    ]  # fmt: skip
    for label, value in rows:
        print(f"{label:20} {value}")
    for line in watch.early_acks[:5]:
        print("  early ack:", line)
    return (
        missing
        + duplicates
        + errors
        + len(watch.early_acks)
        + (stored != expected)
        + (watch.acked != count)
        + (limit is not None and watch.max_result_depth < limit)
    )


async def main(arguments: argparse.Namespace) -> int:
    count: int = arguments.commands
    slow: bool = arguments.slow_results
    with service_urls() as urls:
        admin = BrokerAdmin(urls.management_url, urls.amqp_url)
        settings = isolated_settings(
            urls.amqp_url,
            arguments.mongodb_url or urls.mongodb_url,
            "flood",
            log_level="WARNING",
            result_queue_max_length=arguments.result_queue_max_length if slow else None,
        )
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    log = Path(tempfile.gettempdir()) / f"flood-worker-{uuid.uuid4().hex[:8]}.log"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_url)
    try:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            await declare(await connection.channel(), settings)
        run = uuid.uuid4().hex[:10]
        step = max(count // 10, 1)

        def progress(confirmed: int) -> None:
            if confirmed % step < 500:
                print(f"  published {confirmed:>9,}", flush=True)

        print(f"publishing {count:,} commands to {settings.import_queue}", flush=True)
        publish_rate = await publish_queued(
            settings.amqp_url, settings.import_queue, run, count, on_confirmed=progress
        )
        per_second = arguments.results_per_second if slow else None
        print(f"draining with a worker process (log: {log})", flush=True)
        answers, watch, seconds, peak = await drain(settings, admin, run, count, per_second, log)
        checking = time.perf_counter()
        stored = await stored_effects(client[settings.mongodb_database])
        effects = (stored, Effects.of(count), time.perf_counter() - checking)
        return report(settings, count, publish_rate, answers, watch, seconds, peak, effects)
    finally:
        await client.close()
        await remove(settings, store)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the services')")
    parser.add_argument(
        "--slow-results",
        action="store_true",
        help="a result queue length limit, read slowly (results refused, none lost)",
    )
    parser.add_argument("--result-queue-max-length", type=int, default=1_000)
    parser.add_argument("--results-per-second", type=float, default=300.0)
    failures = uvloop.run(main(parser.parse_args()))
    print("OK" if failures == 0 else f"FAILED: {failures}")
    raise SystemExit(1 if failures else 0)
