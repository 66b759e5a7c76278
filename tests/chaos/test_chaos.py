"""The chaos suite's CI seed: about 2 000 commands (a tenth and more of their ids published two
to four times) through a real worker process killed with SIGKILL twice, a real RabbitMQ
restart (`rabbitmqctl stop_app`/`start_app`) and the database unreachable for a few seconds;
then the stored profiles and relations, every answer and every event against the model. An
event may be published again alike (the same `message_id` + `event`, the same contents: an
owner that died between publishing and acking; the README tells consumers to dedupe on those),
never with other contents.

`CHAOS_SEED` picks another seed; `CHAOS_BROKER=proxy` cuts only this test's broker
connections instead of restarting RabbitMQ (which every other test on that broker would feel).
`CHAOS_LOG_LEVEL=DEBUG` makes its worker log (in the test's tmp_path) say why commands wait.
`bench/chaos.py` runs the same at scale, by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from tests.chaos.faults import BrokerFault
from tests.chaos.run import ChaosConfig, run_chaos
from tests.integration.conftest import services, settings, store  # noqa: F401 (fixtures)
from worker.settings import Settings
from worker.store.mongo import MongoStore

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
async def test_a_small_seed_survives_kills_a_broker_restart_and_a_database_cut(
    settings: Settings,  # noqa: F811
    store: MongoStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        seed=int(os.environ.get("CHAOS_SEED", "2026")),
        commands=2_000,
        kills=2,
        broker_restarts=1,
        database_cuts=1,
        database_seconds=6,
        broker=cast(BrokerFault, os.environ.get("CHAOS_BROKER", "restart")),
        timeout_seconds=200,
    )
    report = await run_chaos(settings, config, tmp_path, say=print)
    print("\n".join(report.lines()))
    found = report.findings
    for kind, items in found.problems().items():
        print(f"{kind} ({len(items)}):", *items[:5], sep="\n  ")

    assert (report.kills, report.broker_restarts, report.database_cuts) == (2, 1, 1), report.faults
    assert report.crashes == 0, f"the worker exited on its own; log: {tmp_path}"
    assert found.lost == [], "commands never answered"
    assert found.divergent == [], "copies of one command answered differently (no 500)"
    assert found.divergent_events == [], "one command's event published with two contents"
    assert found.problems() == {}
