"""The chaos suite's CI seeds: a seeded mix of imports and relation commands (a tenth and more
of their ids published two to four times) through real worker processes killed with SIGKILL,
a real RabbitMQ restart (`rabbitmqctl stop_app`/`start_app`) and the database unreachable for
a few seconds; then the stored profiles and relations, every answer and every event against
the model, and the order per key by the events' times. An event may be published again alike
(the same `message_id` + `event`, the same contents: an owner that died between publishing
and acking; the README tells consumers to dedupe on those), never with other contents.

- One process (`PW_PARTITIONS` 1), about 2 000 commands, two kills: the full stream, whose
  profiles and relations are also reached through several order keys.
- Three processes sharing P = 4 partitions, about 1 500 commands: three kills (each of a live
  process drawn from the seed), a broker restart, a database cut, a process joining and one
  leaving with SIGTERM. The stream reaches each profile and relation through one order key
  (`Mix(keyed=True)`): across partitions only one key's commands keep their order (SPEC §9).

`CHAOS_SEED` picks another seed; `CHAOS_BROKER=proxy` cuts only this test's broker
connections instead of restarting RabbitMQ (which every other test on that broker would feel).
`CHAOS_LOG_LEVEL=DEBUG` makes the worker logs (`worker-<n>.log` in the test's tmp_path) say
why commands wait. `bench/chaos.py` runs the same at scale, by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from tests.chaos.faults import BrokerFault
from tests.chaos.generator import Mix
from tests.chaos.run import ChaosConfig, Report, run_chaos
from tests.integration.conftest import settings, store  # noqa: F401 (fixtures)
from worker.settings import Settings
from worker.store.mongo import MongoStore

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CHAOS_SEED", "2026"))
BROKER = cast(BrokerFault, os.environ.get("CHAOS_BROKER", "restart"))


@pytest.mark.timeout(420)
async def test_a_small_seed_survives_kills_a_broker_restart_and_a_database_cut(
    settings: Settings,  # noqa: F811
    store: MongoStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        seed=SEED,
        commands=2_000,
        kills=2,
        broker_restarts=1,
        database_cuts=1,
        database_seconds=6,
        broker=BROKER,
        timeout_seconds=300,  # a deadline, not a speed target: 206 s were seen on CI
    )
    report = await run_chaos(settings, config, tmp_path, say=print)
    clean(report, tmp_path)
    assert (report.kills, report.broker_restarts, report.database_cuts) == (2, 1, 1), report.faults


@pytest.mark.timeout(420)
async def test_three_processes_on_four_partitions_survive_kills_a_restart_a_cut_and_rescaling(
    settings: Settings,  # noqa: F811
    store: MongoStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        seed=SEED + 1,
        commands=1_500,
        kills=3,
        broker_restarts=1,
        database_cuts=1,
        database_seconds=6,
        broker=BROKER,
        mix=Mix(keyed=True),
        processes=3,
        partitions=4,
        joins=1,
        leaves=1,
        timeout_seconds=300,  # a deadline, not a speed target: 206 s were seen on CI
    )
    report = await run_chaos(settings, config, tmp_path, say=print)
    clean(report, tmp_path)
    faults = (report.kills, report.broker_restarts, report.database_cuts)
    assert (*faults, report.joins, report.leaves) == (3, 1, 1, 1, 1), report.faults
    assert report.forced_stops == 0, f"a process ignored SIGTERM for a minute; logs: {tmp_path}"
    assert report.unclean_exits == [], f"a SIGTERM ended a process badly; logs: {tmp_path}"
    first_three = report.taken_by_process[:3]
    assert sum(1 for taken in first_three if taken) >= 2, f"never shared: {first_three}"


def clean(report: Report, logs: Path) -> None:
    """Nothing lost, applied twice, out of order or else off the model; no crash."""
    print("\n".join(report.lines()))
    found = report.findings
    for kind, items in found.problems().items():
        print(f"{kind} ({len(items)}):", *items[:5], sep="\n  ")
    assert report.crashes == 0, f"a worker exited on its own ({report.crashes_by_process}): {logs}"
    assert found.lost == [], "commands never answered"
    assert found.double_applied == 0, "commands decided twice"
    assert found.out_of_order == [], "commands of one order key decided out of queue order"
    assert found.divergent == [], "copies of one command answered differently (no 500)"
    assert found.divergent_events == [], "one command's event published with two contents"
    assert found.problems() == {}
