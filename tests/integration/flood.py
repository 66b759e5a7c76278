"""A flood of queued import commands and the tally of its answers, shared by
tests/integration/test_flood.py (CI-sized) and bench/flood.py (a million, by hand).

Command n of a run is a pure function of n, so a million of them are generated as they are
published and checked with one byte per command, never held in memory: seven in ten create a
profile (a new email and `loyalty_id`, age 30), three in ten `incr` the age of a profile an
earlier command created, matched alternately by email and by `loyalty_id`. Each carries the
message id `flood:<run>:<n>`, which its result echoes as its correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiormq
import orjson
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from tests.integration.conftest import TOKEN
from worker.backfill.publishing import Pipeline

CREATED_AGE = 30


def created_before(n: int) -> int:
    """How many of commands 0 … n-1 create a profile (commands 0-6 of every ten)."""
    return 7 * (n // 10) + min(n % 10, 7)


def body(n: int) -> bytes:
    """Command n: a creation, or an `incr` of a profile created by an earlier command."""
    created = created_before(n)
    command: dict[str, Any] = {"account_id": 1, "db_id": 10, "token": TOKEN}
    if n % 10 < 7:
        data = {"_fname": f"F{created}", "city": "Bergen", "age": CREATED_AGE}
        data["loyalty_id"] = f"L{created}"
        command.update(email=f"flood{created}@example.com", data=data)
        return orjson.dumps(command)
    target = (n * 7919) % created
    command["data"] = {"age": {"action": "incr", "value": 1}}
    if n % 2:
        command["email"] = f"flood{target}@example.com"
    else:
        command.update(matching="custom", field_name="loyalty_id", field_value=f"L{target}")
    return orjson.dumps(command)


@dataclass(frozen=True)
class Effects:
    """What `count` commands must leave in the database, each applied exactly once."""

    profiles: int
    age_sum: int

    @classmethod
    def of(cls, count: int) -> Effects:
        profiles = created_before(count)
        return cls(profiles, CREATED_AGE * profiles + (count - profiles))


async def stored_effects(database: Any) -> Effects:
    """The same figures, read from the database."""
    profiles = await database.profiles.count_documents({})
    pipeline = [{"$group": {"_id": None, "total": {"$sum": "$fields.age"}}}]
    totals = await (await database.profiles.aggregate(pipeline)).to_list(None)
    return Effects(profiles, int(totals[0]["total"]) if totals else 0)


def message_id(run: str, n: int) -> str:
    return f"flood:{run}:{n}"


async def publish_queued(
    amqp_url: str,
    queue: str,
    run: str,
    count: int,
    *,
    window: int = 2_000,
    on_confirmed: Callable[[int], None] | None = None,
) -> float:
    """Publish commands 0 … count-1 persistently with pipelined confirms, as a backfill does;
    commands per second, to the last confirm. `on_confirmed(total)` follows the progress."""
    confirmed = 0

    def progress(_line: int, size: int) -> None:
        nonlocal confirmed
        confirmed += size
        if on_confirmed is not None and size:
            on_confirmed(confirmed)

    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        assert isinstance(channel, aiormq.Channel)
        pipeline = Pipeline(channel, queue, window, progress)
        started = time.perf_counter()
        for n in range(count):
            properties = Basic.Properties(
                content_type="application/json", delivery_mode=2, message_id=message_id(run, n)
            )
            await pipeline.publish(n + 1, body(n), properties)
        await pipeline.flush()
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


class Answers:
    """Every result of a run: one byte per command counts its answers (saturating at 255)."""

    def __init__(self, run: str, count: int) -> None:
        self._prefix = f"flood:{run}:"
        self.counts = bytearray(count)
        self.answered = 0
        """Commands answered at least once (kept as it goes: counting a million bytes for
        every result made the reader the bottleneck)."""
        self.codes: Counter[int] = Counter()
        self.received = 0
        """Results delivered to the reader, recorded or not yet."""
        self.foreign = 0
        """Results whose correlation id is not a command of this run."""
        self.last_at = 0.0
        self.first_at = 0.0
        self.reading = asyncio.Lock()
        """Held by a slow reader around each `basic.get` (see `read_results`)."""

    def record(self, correlation_id: str | None, body: bytes) -> None:
        now = time.perf_counter()
        self.first_at = self.first_at or now
        self.last_at = now
        n = self._command(correlation_id)
        if n is None:
            self.foreign += 1
            return
        self.answered += self.counts[n] == 0
        self.counts[n] = min(self.counts[n] + 1, 255)
        self.codes[int(orjson.loads(body)["error"])] += 1

    @property
    def duplicates(self) -> int:
        """Answers beyond the first of each command."""
        return sum(self.codes.values()) - self.answered

    @property
    def missing(self) -> list[int]:
        return [n for n, answers in enumerate(self.counts) if not answers]

    def _command(self, correlation_id: str | None) -> int | None:
        if not correlation_id or not correlation_id.startswith(self._prefix):
            return None
        n = int(correlation_id[len(self._prefix) :])
        return n if 0 <= n < len(self.counts) else None


async def read_results(
    amqp_url: str,
    queue: str,
    answers: Answers,
    *,
    per_second: float | None = None,
    prefetch: int = 1_000,
    idle_seconds: float = 60.0,
) -> None:
    """Read `queue` into `answers` until every command is answered. TimeoutError when
    nothing arrives for `idle_seconds`.

    As fast as it can (`per_second` None): consuming with `prefetch`, acking in groups. A slow
    consumer (`per_second` results a second at most): one `basic.get` at a time, under
    `answers.reading`, so that whoever holds that lock sees every result the broker took as
    either read (`answers.received`) or still in the queue, none on the way.
    """
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        if per_second is None:
            await _consume(channel, queue, answers, prefetch, idle_seconds)
        else:
            await _get_slowly(channel, queue, answers, per_second, idle_seconds)
    finally:
        await connection.close()


async def _consume(
    channel: aiormq.abc.AbstractChannel,
    queue: str,
    answers: Answers,
    prefetch: int,
    idle_seconds: float,
) -> None:
    await channel.basic_qos(prefetch_count=prefetch)
    arrived: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def on_message(message: DeliveredMessage) -> None:
        answers.received += 1
        arrived.put_nowait(message)

    await channel.basic_consume(queue, on_message, no_ack=False)
    unacked = 0
    while answers.answered < len(answers.counts):
        message = await asyncio.wait_for(arrived.get(), idle_seconds)
        answers.record(message.header.properties.correlation_id, message.body)
        unacked += 1
        done = answers.answered == len(answers.counts)
        if arrived.empty() or unacked >= 256 or done:
            await channel.basic_ack(message.delivery_tag or 0, multiple=True)
            unacked = 0


async def _get_slowly(
    channel: aiormq.abc.AbstractChannel,
    queue: str,
    answers: Answers,
    per_second: float,
    idle_seconds: float,
) -> None:
    started, read, last = time.perf_counter(), 0, time.monotonic()
    while answers.answered < len(answers.counts):
        async with answers.reading:
            got = await channel.basic_get(queue, no_ack=True)
            if isinstance(got.delivery, Basic.GetOk):
                answers.received += 1
                answers.record(got.header.properties.correlation_id, got.body)
        if not isinstance(got.delivery, Basic.GetOk):
            if time.monotonic() - last > idle_seconds:
                raise TimeoutError(f"no result in {queue} for {idle_seconds} s")
            await asyncio.sleep(0.01)
            continue
        read, last = read + 1, time.monotonic()
        ahead = started + read / per_second - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


async def stopped(process: asyncio.subprocess.Process, watching: asyncio.Task[None]) -> None:
    """The watcher of a worker process cancelled, then the process stopped (SIGTERM)."""
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    if process.returncode is None:
        process.terminate()
    await process.wait()


def rss_mib(pid: int) -> tuple[float, float]:
    """A process's resident set now and at its peak (VmRSS, VmHWM), in MiB."""
    figures = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, *value = line.split()
            if key in figures:
                figures[key] = int(value[0]) / 1024
    return figures["VmRSS:"], figures["VmHWM:"]
