"""Throughput on one RabbitMQ node with classic queues against the three-node cluster with quorum
queues, in one run: the chaos suite's stream without faults, alternately on each, the same
seed, worker processes and database.

    python -m bench.cluster [--commands 5000] [--rounds 2] [--processes 3] [--partitions 8]
        [--mongodb-url URL]

Prints, per round and broker, the commands answered a second (`Report.stream_rate`: first
answers of the stream, the setup phase left out, from the first to the last) and whether the
run matched the model. The cluster is `PW_RABBITMQ_NODES=3 scripts/services.sh start`
(`CLUSTER_AMQP_URL`, else `scripts/rabbitmq-cluster.sh addresses`). On one machine the three
nodes share the workers' cores: the figure is the cost of replication plus that sharing, not
what three machines give.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import uvloop

from bench.chaos import settings_for
from tests.chaos.generator import Mix
from tests.chaos.run import ChaosConfig, run_chaos
from tests.integration.conftest import CATALOG
from worker.store.mongo import MongoStore


async def rate(cluster: bool, arguments: argparse.Namespace, seed: int) -> tuple[float, bool]:
    """Commands answered a second on one broker, and whether the run was clean."""
    settings = settings_for(arguments.mongodb_url, cluster)
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    config = ChaosConfig(
        seed=seed,
        commands=arguments.commands,
        kills=0,
        broker_restarts=0,
        database_cuts=0,
        mix=Mix(keyed=arguments.partitions > 1),
        processes=arguments.processes,
        partitions=arguments.partitions,
        joins=0,
        leaves=0,
        ahead=2_000,
        timeout_seconds=1_800,
    )
    try:
        report = await run_chaos(settings, config, Path(tempfile.mkdtemp(prefix="cluster-")))
    finally:
        await store.drop(settings.mongodb_database)
        await store.close()
    return report.stream_rate, not report.findings.problems()


async def main(arguments: argparse.Namespace) -> None:
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    print(
        f"{arguments.commands} commands, {arguments.processes} processes, "
        f"P = {arguments.partitions}"
    )
    for round_ in range(1, arguments.rounds + 1):
        for cluster in (False, True):
            name = "3 nodes, quorum" if cluster else "1 node, classic"
            per_second, clean = await rate(cluster, arguments, arguments.seed + round_)
            print(f"round {round_}, {name}: {per_second:.0f} commands/s, clean: {clean}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    uvloop.run(main(parser.parse_args()))
