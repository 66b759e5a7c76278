"""The chaos suite on a three-node RabbitMQ cluster with quorum queues (issue 17): one stream of
about 2 000 mixed commands (a tenth and more of their ids published two to four times) through
three worker processes given the three nodes' addresses, over P = 4 partitions, while

- the node leading the command queue (declared from one connection: the partition queues too)
  is killed -9 and started again 10 s later,
- the node leading it then is cut off from the other nodes and from the workers for 20 s, and
  healed,
- all three nodes are restarted one after another, each once the quorum queues can spare it.

Checked against the model as the other seeds are: nothing lost, nothing applied twice, copies
answered alike, the order per key held, every answer delivered. The longest pause each fault
caused is printed (`bench/chaos.py --cluster` measures them at scale).

The cluster is `PW_RABBITMQ_NODES=3 scripts/services.sh start` (network namespaces of the
project's own; `make test` starts it) and its address list is `CLUSTER_AMQP_URL`. Without it
the test fails and says so: it never skips.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chaos.generator import Mix
from tests.chaos.run import ChaosConfig, run_chaos
from tests.chaos.test_chaos import SEED, clean
from tests.integration.conftest import CATALOG, isolated_settings, removed
from tests.integration.services import ServiceUrls
from worker.settings import Settings
from worker.store.mongo import MongoStore

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

HOW_TO_START = (
    "No RabbitMQ cluster for the cluster fault tests: start one with `PW_RABBITMQ_NODES=3 "
    "scripts/services.sh start` and export CLUSTER_AMQP_URL=$(scripts/rabbitmq-cluster.sh "
    "addresses) (`make test` does both), or deselect them with -m 'not cluster'."
)


@pytest.fixture
async def cluster_settings(services: ServiceUrls) -> AsyncIterator[Settings]:
    """The test's own names on the cluster, quorum queues; its queues and database removed
    after it."""
    addresses = os.environ.get("CLUSTER_AMQP_URL")
    if not addresses:
        pytest.fail(HOW_TO_START)
    settings = isolated_settings(
        addresses, services.mongodb_url, "cluster", queue_type="quorum", catalog_cache_seconds=0
    )
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    await store.close()
    yield settings
    await removed(settings)


@pytest.mark.timeout(600)
async def test_three_processes_on_a_cluster_survive_a_node_killed_cut_off_and_restarted_in_turn(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    config = ChaosConfig(
        seed=SEED + 2,
        commands=2_000,
        kills=0,
        broker_restarts=0,
        database_cuts=0,
        mix=Mix(keyed=True),
        processes=3,
        partitions=4,
        joins=0,
        leaves=0,
        node_faults=("kill-leader", "isolate", "rolling-restart"),
        rate=12.0,  # messages a second: the stream must outlast a rolling restart (83 s seen)
        timeout_seconds=480,
    )
    report = await run_chaos(cluster_settings, config, tmp_path, say=print)
    clean(report, tmp_path)
    assert report.node_faults == 3, report.faults
    assert report.outlasting == [], f"paced too fast for its faults: {report.faults}"
    assert report.forced_stops == 0, f"a process ignored SIGTERM for a minute; logs: {tmp_path}"
