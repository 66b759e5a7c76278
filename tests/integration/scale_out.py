"""Helpers of the scale-out tests (`test_scale_out.py`): a fleet of `profile-worker run`
processes on partitioned queues, a paced stream of numbered commands per key, the fault pattern
(kill -9, join, SIGTERM) struck while it flows, and the checks of order, answers and balance.

Every check returns the problems it found, each naming the key (profile or relation), what was
expected and what came, so that one failing run shows everything that went wrong at once, with
what the fleet went through and where the workers' logs are.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import EventTap, worker_environment
from worker.runtime.client import CommandClient, Reply
from worker.runtime.partitions import Partitions
from worker.runtime.topology import Route
from worker.settings import Settings

LOG_ROOT = Path("/tmp/scale_out")
START_SECONDS = 60.0
"""A `profile-worker run` process is ready within this (imports take a while on a busy box)."""
LOST_CLIENT = (
    "the test's own broker channel was closed during the run (a broker restart? the broker's "
    "log says): its reply queue went with it, so the answers after that are missing"
)
STALL_SECONDS = 60.0
"""The stream counts as stalled when no answer came for this long with commands outstanding."""


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


# Processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now (a worker started on it a moment later may still find
    it taken: `Fleet` then starts it on another)."""
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def _http_get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        try:
            return int(error.code), bytes(error.read())
        finally:
            error.close()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Member:
    """One `python -m worker run` process, its output in `log_path`, its HTTP port `port`."""

    name: str
    port: int
    log_path: Path
    process: asyncio.subprocess.Process

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = await asyncio.to_thread(_http_get, f"http://127.0.0.1:{self.port}/readyz")
        return status, (orjson.loads(body) if body else {})

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics by (name, sorted labels)."""
        status, body = await asyncio.to_thread(_http_get, f"http://127.0.0.1:{self.port}/metrics")
        assert status == 200, f"{self.name}: /metrics answered {status}"
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    async def kill(self) -> None:
        """SIGKILL: nothing finished, nothing acked; the broker closes its connection."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and the exit code; SIGKILL if it does not stop within `timeout`."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"{self.name} did not stop within {timeout:g} s of SIGTERM:\n{self.log_tail()}"
            ) from None


class Fleet:
    """The worker processes of one test, each with its own HTTP port and log file: started,
    killed, stopped; every one still running is killed on exit, whatever happened."""

    def __init__(self, environment: Mapping[str, str], log_dir: Path) -> None:
        self._environment = dict(environment)
        self.log_dir = log_dir
        self.members: list[Member] = []
        self.journal: list[str] = []
        """What was done to the fleet and when, for the report of a run."""
        self._started = time.monotonic()
        self._named = 0

    async def __aenter__(self) -> Fleet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for member in self.members:
            await member.kill()

    def note(self, text: str) -> None:
        self.journal.append(f"{time.monotonic() - self._started:6.1f} s {text}")

    @property
    def live(self) -> list[Member]:
        return [member for member in self.members if member.alive]

    async def start(self, count: int = 1) -> list[Member]:
        """`count` more processes, started together, each ready (/readyz answered 200)."""
        names = [f"w{self._named + n}" for n in range(count)]
        self._named += count
        return list(await asyncio.gather(*(self._started_one(name) for name in names)))

    async def _started_one(self, name: str) -> Member:
        for _ in range(3):
            member = await self._spawn(name)
            self.members.append(member)
            if await self._ready(member):
                self.note(f"{name} (pid {member.process.pid}, port {member.port}) ready")
                return member
            if "already in use" not in member.log_tail():  # else: another port
                break
        raise AssertionError(f"{name} did not become ready:\n{member.log_tail()}")

    async def _spawn(self, name: str) -> Member:
        port = free_port()
        log_path = self.log_dir / f"{name}.log"
        environment = {**self._environment, "PW_METRICS_PORT": str(port)}
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "worker", "run", env=environment, stdout=log, stderr=log
            )
        return Member(name, port, log_path, process)

    async def _ready(self, member: Member) -> bool:
        deadline = time.monotonic() + START_SECONDS
        while member.alive and time.monotonic() < deadline:
            status, _ = await member.readyz()
            if status == 200:
                return True
            await asyncio.sleep(0.1)
        await member.kill()
        return False

    async def kill(self, member: Member) -> None:
        await member.kill()
        self.note(f"{member.name} killed with SIGKILL")

    async def terminate(self, member: Member) -> int:
        code = await member.terminate()
        self.note(f"{member.name} stopped by SIGTERM, exit code {code}")
        return code

    async def holdings(self) -> dict[str, dict[str, Any]]:
        """Each live member's /readyz body (partitions held, queues routed)."""
        live = self.live
        reports = await asyncio.gather(*(member.readyz() for member in live))
        return {member.name: body for member, (_, body) in zip(live, reports, strict=True)}

    async def router_of(self, queue: str) -> Member | None:
        """The live member that routes `queue`, if one does now."""
        for member in self.live:
            _, body = await member.readyz()
            if queue in body.get("routing", []):
                return member
        return None


def log_lines(fleet: Fleet, levels: Sequence[str] = ("warning", "error", "critical")) -> list[str]:
    """The members' log lines at `levels`, each prefixed by its member's name; a line that is
    not JSON (a traceback, a crash outside the logger) counts as an error."""
    found = []
    for member in fleet.members:
        with contextlib.suppress(OSError):
            for line in member.log_path.read_text(errors="replace").splitlines():
                try:
                    level = orjson.loads(line).get("level")
                except orjson.JSONDecodeError:
                    level = "error"
                if level in levels:
                    found.append(f"{member.name}: {line}")
    return found


# Balance -------------------------------------------------------------------------------------


def balance_problems(
    holdings: Mapping[str, Mapping[str, Any]], queues: Sequence[str], partitions: int
) -> list[str]:
    """What keeps `holdings` (name → /readyz body) from a balance: each partition of each
    queue held by exactly one member, each member within one of P / W, one router per queue."""
    if not holdings:
        return ["no live process"]
    floor, ceil = partitions // len(holdings), -(-partitions // len(holdings))
    problems = []
    for queue in queues:
        held = {
            name: list(body.get("partitions", {}).get(queue, [])) for name, body in holdings.items()
        }
        every = sorted(index for indices in held.values() for index in indices)
        if every != list(range(partitions)):
            problems.append(
                f"{queue}: partitions held {held}, not each of 0..{partitions - 1} once"
            )
        problems += [
            f"{queue}: {name} holds {len(indices)} partitions, not {floor}..{ceil}"
            for name, indices in held.items()
            if not floor <= len(indices) <= ceil
        ]
        routers = [name for name, body in holdings.items() if queue in body.get("routing", [])]
        if len(routers) != 1:
            problems.append(f"{queue}: routed by {routers}, not by exactly one process")
    return problems


async def balanced(fleet: Fleet, queues: Sequence[str], partitions: int, timeout: float) -> None:
    """Wait until the live members hold a balance (see `balance_problems`); AssertionError
    with what was still off after `timeout`."""
    last: list[str] = []

    async def holds() -> bool:
        nonlocal last
        last = balance_problems(await fleet.holdings(), queues, partitions)
        return not last

    try:
        await eventually(holds, timeout, "a balance of the partitions")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last}") from None


async def gauge_problems(fleet: Fleet, queue: str, partitions: int) -> list[str]:
    """`profile_worker_partitions_owned{queue}` of the live members: P in all, each within one
    of P / W."""
    owned = {}
    for member in fleet.live:
        samples = await member.metrics()
        key = ("profile_worker_partitions_owned", (("queue", queue),))
        owned[member.name] = samples.get(key)
    floor, ceil = partitions // max(1, len(owned)), -(-partitions // max(1, len(owned)))
    values = [value for value in owned.values() if value is not None]
    if len(values) != len(owned) or sum(values) != partitions:
        return [
            f"profile_worker_partitions_owned{{queue={queue}}}: {owned}, not {partitions} in all"
        ]
    return [
        f"profile_worker_partitions_owned{{queue={queue}}}: {name} {value:g}, not {floor}..{ceil}"
        for name, value in owned.items()
        if value is not None and not floor <= value <= ceil
    ]


# The stream ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A command of the stream: the `step`-th command of `key` (a profile or a relation)."""

    key: str
    step: int
    message_id: str
    body: dict[str, Any]


def interleaved(
    keys: Sequence[str], steps: int, body: Callable[[str, int], dict[str, Any]], seed: int
) -> list[Step]:
    """`steps` commands per key, each key's in step order, the keys interleaved at random
    (seeded): a key's next step comes right behind its last one or far later."""
    chance = random.Random(seed)
    remaining = dict.fromkeys(keys, 0)
    stream: list[Step] = []
    while remaining:
        key = chance.choice(list(remaining))
        step = remaining[key]
        message_id = f"{key}#{step}#{chance.getrandbits(48):012x}"
        stream.append(Step(key, step, message_id, body(key, step)))
        if step + 1 == steps:
            del remaining[key]
        else:
            remaining[key] = step + 1
    return stream


class Answers:
    """Every answer that comes back to the client, by correlation id (= message id)."""

    def __init__(self, client: CommandClient) -> None:
        self._client = client
        self.by_id: dict[str, list[Reply]] = defaultdict(list)

    @property
    def answered(self) -> int:
        return len(self.by_id)

    @contextlib.asynccontextmanager
    async def collecting(self) -> AsyncIterator[Answers]:
        task = asyncio.create_task(self._collect())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _collect(self) -> None:
        while True:
            try:
                reply = await self._client.reply(timeout=1.0)
            except TimeoutError:
                continue
            self.by_id[reply.correlation_id or ""].append(reply)


@dataclass
class Pacing:
    """How the stream is fed: at most `rate` commands a second, at most `ahead` published and
    not yet answered, and nothing past `hold_at` (a share of the stream) until `released`."""

    rate: float
    ahead: int
    hold_at: float = 0.85
    released: asyncio.Event = field(default_factory=asyncio.Event)
    slice: int = 20


async def publish_paced(
    client: CommandClient, queue: str, stream: Sequence[Step], answers: Answers, pacing: Pacing
) -> None:
    """Publish `stream` in order (one channel, confirmed slices), paced by `pacing`, so that
    the faults strike while commands are queued, routed and in hand. AssertionError when no
    answer comes for STALL_SECONDS while published commands wait for one."""
    started = time.monotonic()
    hold = int(len(stream) * pacing.hold_at)
    sent, seen, seen_at = 0, answers.answered, started
    while sent < len(stream):
        now = time.monotonic()
        if answers.answered != seen:
            seen, seen_at = answers.answered, now
        limit = min(
            len(stream),
            sent + pacing.slice,
            int((now - started) * pacing.rate) + pacing.slice,
            seen + pacing.ahead,
        )
        if not pacing.released.is_set():
            limit = min(limit, hold)
        if limit > sent:
            await client.send_many(queue, [(s.message_id, s.body) for s in stream[sent:limit]])
            sent = limit
        elif seen < sent and now - seen_at > STALL_SECONDS:
            raise AssertionError(
                f"the stream stalled: {sent} of {len(stream)} published, {seen} answered, "
                f"none for {STALL_SECONDS:g} s"
            )
        else:
            await asyncio.sleep(0.02)  # pacing


# The faults ----------------------------------------------------------------------------------


async def fault_pattern(
    fleet: Fleet, queue: str, progress: Callable[[], float], released: asyncio.Event
) -> None:
    """While the stream flows: SIGKILL the process routing `queue` (at 15 % answered), add a
    process (35 %), SIGTERM one of the first ones (60 %; it must exit 0); then release the
    rest of the stream."""
    try:
        await eventually(lambda: progress() >= 0.15, 90, "15 % of the stream answered")
        router = await fleet.router_of(queue)
        victim = router or fleet.live[0]
        role = f"routes {queue}" if router else "(no router seen)"
        fleet.note(f"{victim.name} {role}: killing it at {progress():.0%} answered")
        await fleet.kill(victim)

        await eventually(lambda: progress() >= 0.35, 90, "35 % of the stream answered")
        fleet.note(f"adding a process at {progress():.0%} answered")
        [joined] = await fleet.start()

        await eventually(lambda: progress() >= 0.60, 90, "60 % of the stream answered")
        leaving = next(member for member in fleet.live if member is not joined)
        fleet.note(f"SIGTERM to {leaving.name} at {progress():.0%} answered")
        code = await fleet.terminate(leaving)
        assert code == 0, f"{leaving.name} exited {code} after SIGTERM:\n{leaving.log_tail()}"
    finally:
        released.set()


# A run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a stream through the faults left: the answers and events, the fleet's story."""

    fleet: Fleet
    answers: dict[str, list[Reply]]
    events: list[dict[str, Any]]
    problems: list[str]
    """What the run itself found: a stall, balance, exit codes, commands left in queues."""
    seconds: float


async def streamed_through_faults(
    settings: Settings,
    client: CommandClient,
    tap: EventTap,
    queue: str,
    stream: Sequence[Step],
    log_dir: Path,
    seconds: float,
) -> Run:
    """Three processes balanced; `stream` published to `queue` over about `seconds` while the
    fault pattern strikes; then every answer and event awaited, the balance of the two left
    checked, and they are stopped with SIGTERM."""
    queues = [settings.import_queue, settings.relations_queue]
    problems: list[str] = []
    answers = Answers(client)
    started = time.monotonic()
    async with Fleet(worker_environment(settings), log_dir) as fleet, answers.collecting():
        await fleet.start(3)
        await balanced(fleet, queues, settings.partitions, timeout=30)
        fleet.note("three processes balanced; streaming")
        pacing = Pacing(rate=len(stream) / seconds, ahead=max(100, len(stream) // 8))
        faults = asyncio.create_task(
            fault_pattern(fleet, queue, lambda: answers.answered / len(stream), pacing.released)
        )
        try:
            await publish_paced(client, queue, stream, answers, pacing)
            fleet.note("stream published")
            await eventually(lambda: answers.answered == len(stream), 90, "every answer")
            fleet.note("every command answered")
        except AssertionError as exc:
            problems.append(f"{exc} ({answers.answered} of {len(stream)} answered)")
        finally:
            problems += await _fault_problems(faults)
        problems += await _settled(fleet, settings, queue, queues)
        if client.channel.is_closed:
            problems.insert(0, LOST_CLIENT)

    events: list[dict[str, Any]] = []

    def all_events() -> bool:
        events.extend(tap.drained())
        return len(events_of(events, stream)) == len(stream)

    with contextlib.suppress(AssertionError):  # the checks name the missing ones
        await eventually(all_events, 15, "an event of every command")
    return Run(fleet, dict(answers.by_id), events, problems, time.monotonic() - started)


async def _fault_problems(faults: asyncio.Task[None]) -> list[str]:
    if not faults.done():
        faults.cancel()
    try:
        await faults
    except asyncio.CancelledError:
        return ["the fault pattern did not finish with the stream"]
    except AssertionError as exc:
        return [f"fault pattern: {exc}"]
    return []


async def _settled(
    fleet: Fleet, settings: Settings, queue: str, queues: Sequence[str]
) -> list[str]:
    """After the stream: the balance of the live processes (/readyz and the gauge), nothing
    left waiting, then the graceful stop of each (exit 0) with nothing left in any queue.

    Queues are looked at on a connection of their own, opened now: a refused passive declare
    closes its channel, and must not take the event tap's channel along."""
    async with await aio_pika.connect(settings.amqp_url, timeout=30) as connection:
        return await _settled_on(fleet, await connection.channel(), settings, queue, queues)


async def _settled_on(
    fleet: Fleet, channel: AbstractChannel, settings: Settings, queue: str, queues: Sequence[str]
) -> list[str]:
    problems = []
    try:
        await balanced(fleet, queues, settings.partitions, timeout=30)
        problems += await gauge_problems(fleet, queue, settings.partitions)
    except AssertionError as exc:
        problems.append(str(exc))
    flowing = flowing_queues(settings, queue)
    try:
        await eventually(lambda: _all_empty(channel, flowing), 30, "nothing left waiting")
    except AssertionError as exc:
        problems.append(f"{exc}: {await queued(channel, flowing)}")
    codes = await asyncio.gather(*(fleet.terminate(member) for member in fleet.live))
    problems += [f"exit code {code} after SIGTERM" for code in codes if code != 0]
    left = {n: count for n, count in (await queued(channel, [*flowing, dead_queue(queue)])).items()}
    return problems + ([f"left in queues after the stop: {left}"] if any(left.values()) else [])


def summary(label: str, stream: Sequence[Step], run: Run) -> str:
    """What a run went through, for `-s`: how long it took, how many answers and events came
    twice, the fleet's journal and what the workers warned about."""
    twice = sum(1 for replies in run.answers.values() if len(replies) > 1)
    counted = [event.get("message_id") for event in run.events]
    again = len(counted) - len(set(counted))
    warned = log_lines(run.fleet)
    return (
        f"{label}: {len(stream)} commands in {run.seconds:.1f} s, {twice} answered again, "
        f"{again} events published again, {len(warned)} warnings in the logs "
        f"({run.fleet.log_dir})\n  " + "\n  ".join([*run.fleet.journal, *warned[:10]])
    )


def report(run: Run, problems: Sequence[str], limit: int = 40) -> str:
    """A failure's message: the problems (the first `limit`), what the fleet went through and
    where the workers' logs are."""
    shown = "\n".join(problems[:limit])
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    journal = "\n".join(run.fleet.journal)
    return (
        f"{len(problems)} problem(s):\n{shown}{more}\nfleet:\n{journal}\nlogs: {run.fleet.log_dir}"
    )


# Queues --------------------------------------------------------------------------------------


async def queued(channel: AbstractChannel, names: Sequence[str]) -> dict[str, int]:
    """Messages ready in each of `names` (passive declares)."""
    counts = {}
    for name in names:
        queue = await channel.declare_queue(name, passive=True)
        counts[name] = queue.declaration_result.message_count or 0
    return counts


async def _all_empty(channel: AbstractChannel, names: Sequence[str]) -> bool:
    return not any((await queued(channel, names)).values())


def flowing_queues(settings: Settings, queue: str) -> list[str]:
    """`queue`, its partitions and retry queues: where a command waits to be applied."""
    route = Route(queue, None)
    retries = [route.retry_queue(n) for n in range(1, settings.retry_max_attempts + 1)]
    names = [queue, *Partitions(queue, settings.partitions).names, *retries]
    return list(dict.fromkeys(names))


def dead_queue(queue: str) -> str:
    return Route(queue, None).dead_queue


# Checks --------------------------------------------------------------------------------------


def answer_problems(
    stream: Sequence[Step],
    answers: Mapping[str, Sequence[Reply]],
    expected: Callable[[Step], Mapping[str, Any]],
) -> list[str]:
    """Every command answered, every copy of an answer alike, and each answer holding the
    `expected` values (a subset of its keys)."""
    problems = []
    for step in stream:
        got = answers.get(step.message_id, [])
        if not got:
            problems.append(f"{step.key} step {step.step} ({step.message_id}): no answer")
            continue
        if any(dict(copy) != dict(got[0]) for copy in got[1:]):
            problems.append(f"{step.key} step {step.step}: answers differ: {got}")
        wanted = dict(expected(step))
        if {name: got[0].get(name) for name in wanted} != wanted:
            problems.append(
                f"{step.key} step {step.step} ({step.message_id}): expected {wanted}, "
                f"answered {dict(got[0])}"
            )
    return problems


def event_problems(
    stream: Sequence[Step], events: Sequence[Mapping[str, Any]], expected: Callable[[Step], str]
) -> list[str]:
    """Each command's event there, of the `expected` routing key; per key, the first copy of
    each command's event in step order; a copy published again alike (but for its time)."""
    steps = {step.message_id: step for step in stream}
    first: dict[str, Mapping[str, Any]] = {}
    order: dict[str, list[int]] = defaultdict(list)
    problems = []
    for event in events:
        step = steps.get(str(event.get("message_id")))
        if step is None:
            continue
        if step.message_id in first:
            if _timeless(first[step.message_id]) != _timeless(event):
                problems.append(f"{step.key} step {step.step}: event again, unlike: {event}")
            continue
        first[step.message_id] = event
        order[step.key].append(step.step)
        if event.get("_routing_key") != expected(step):
            problems.append(
                f"{step.key} step {step.step}: event {event.get('_routing_key')}, "
                f"expected {expected(step)}"
            )
    for key in dict.fromkeys(step.key for step in stream):
        if order[key] != sorted(order[key]):
            problems.append(f"{key}: events left in step order {order[key]}")
    problems += [
        f"{step.key} step {step.step} ({step.message_id}): no event"
        for step in stream
        if step.message_id not in first
    ]
    return problems


def _timeless(event: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name != "occurred_at"}


def events_of(events: Sequence[Mapping[str, Any]], stream: Sequence[Step]) -> set[str]:
    """The message ids of `stream` that caused one of `events`."""
    return {str(event.get("message_id")) for event in events} & {s.message_id for s in stream}
