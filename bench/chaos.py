"""The chaos suite by hand, at scale: a seeded stream through a real worker that is killed,
whose broker restarts and whose database goes away, checked against the reference model.

    python -m bench.chaos [--commands 100000] [--seed N] [--kills 6] [--database-seconds 30]
        [--broker restart|proxy] [--mongodb-url URL] [--batch-max-size N]
        [--processes 3 --partitions 8 [--joins 1] [--leaves 1] [--keys auto|one|several]]
        [--cluster [--node-faults kill-leader,isolate,rolling-restart]]

Prints what was sent, the faults injected, what was lost or applied twice, wrong answers,
state differences and events, worker crashes (exits nobody caused), the peak RSS of the
worker processes and the elapsed time; exits 1 when anything differs from the model.
`--broker restart` runs `rabbitmqctl stop_app`/`start_app` (every client of that broker sees
it); `proxy` cuts only this run's connections. `--mongodb-url` points the run (the worker
through the database proxy) at another MongoDB-wire server than the services' MONGODB_URL
(mongo-java-server), e.g. MongoDB 7 (`PW_SERVICES=docker scripts/services.sh start`).
`--processes N` runs N worker processes sharing `--partitions P` (PW_PARTITIONS): each kill
strikes one live process (drawn from the seed), the broker restart and the database cut all
of them, and by default one process joins and one leaves with SIGTERM during the stream; each
process logs to its own `worker-<n>.log`. With P > 1 the stream addresses each profile and
relation through one order key (`Mix.keyed`, see tests/chaos/generator.py): order across keys
is not kept across partitions (SPEC §9), and the model assumes it; `--keys several` sends the
full stream anyway. Answers and events read are written to the log directory.

`--cluster` runs on the three-node cluster of `PW_RABBITMQ_NODES=3 scripts/services.sh start`
(`CLUSTER_AMQP_URL`, else `scripts/rabbitmq-cluster.sh addresses`) with quorum queues, and
strikes its nodes in turn (`--node-faults`, tests/chaos/cluster.py): the leader node killed -9,
a node cut off for `--isolation-seconds`, a rolling restart. Worker kills, the broker restart
and the database cut are off unless asked for (the restart would strike the default node).
The report ends with the longest pause (no new answer) each fault caused.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast, get_args

import orjson
import uvloop

from tests.chaos.cluster import SCRIPT, NodeFault
from tests.chaos.generator import Mix
from tests.chaos.run import ChaosConfig, Report, run_chaos
from tests.integration.conftest import CATALOG, isolated_settings
from worker.settings import Settings
from worker.store.mongo import MongoStore


def settings_for(mongodb_url: str | None, cluster: bool = False) -> Settings:
    """Names unique to this run, as the integration tests' fixture makes them; the catalog
    cache as the product has it (the run never changes the catalog). On the cluster: its
    addresses and quorum queues."""
    base = Settings()
    amqp_url, on_cluster = base.amqp_url, {}
    if cluster:
        amqp_url = (
            os.environ.get("CLUSTER_AMQP_URL")
            or subprocess.run(
                [str(SCRIPT), "addresses"], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
        on_cluster = {"queue_type": "quorum"}
    return isolated_settings(
        amqp_url, mongodb_url or base.mongodb_url, "chaos", shutdown_grace_seconds=20, **on_cluster
    )


async def main(arguments: argparse.Namespace) -> Report:
    for noisy in ("aiormq", "aio_pika"):  # every dropped connection of the run's own clients
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    settings = settings_for(arguments.mongodb_url, arguments.cluster)
    store = MongoStore.from_settings(settings)
    await store.catalog.apply(CATALOG)
    worker = {"batch_max_size": arguments.batch_max_size} if arguments.batch_max_size else {}
    config = ChaosConfig(
        seed=arguments.seed,
        commands=arguments.commands,
        kills=arguments.kills,
        broker_restarts=arguments.broker_restarts,
        database_cuts=arguments.database_cuts,
        database_seconds=arguments.database_seconds,
        broker=arguments.broker,
        mix=Mix(relations=arguments.relations, keyed=arguments.keyed),
        worker=worker,
        ahead=arguments.ahead,
        restart_delay=(6.0, 7.0) if arguments.restart_after_lease else (0.0, 1.0),
        timeout_seconds=arguments.timeout
        or max(300.0, arguments.commands / (20 if arguments.cluster else 40)),
        processes=arguments.processes,
        partitions=arguments.partitions,
        joins=arguments.joins,
        leaves=arguments.leaves,
        node_faults=arguments.node_faults,
        isolation_seconds=arguments.isolation_seconds,
    )
    log_dir = Path(arguments.log_dir or tempfile.mkdtemp(prefix="chaos-"))
    try:
        report = await run_chaos(settings, config, log_dir, say=print)
    finally:
        if not arguments.keep_database:
            await store.drop(settings.mongodb_database)
        await store.close()
    print("\n".join(report.lines()))
    for kind, items in report.findings.problems().items():
        print(f"{kind} ({len(items)}), first ones:")
        for item in items[: arguments.show]:
            print(f"  {item[:600]}")
    with (log_dir / "findings.txt").open("w") as out:  # every one, for a closer look
        for kind, items in report.findings.problems().items():
            out.writelines(f"{kind}\t{item}\n" for item in items)
    with (log_dir / "answers.jsonl").open("wb") as out:
        for message_id, answers in report.answers.items():
            out.writelines(orjson.dumps({"id": message_id, **one}) + b"\n" for one in answers)
    with (log_dir / "events.jsonl").open("wb") as out:
        out.writelines(orjson.dumps(event) + b"\n" for event in report.events)
    print(
        f"worker logs: {log_dir}/worker-<n>.log, all findings: {log_dir / 'findings.txt'}, "
        "answers and events read: answers.jsonl, events.jsonl"
    )
    if arguments.keep_database:
        print(f"database kept: {settings.mongodb_database} at {settings.mongodb_url}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    parser.add_argument("--cluster", action="store_true", help="on the three-node cluster")
    parser.add_argument(
        "--node-faults",
        default="kill-leader,isolate,rolling-restart",
        help="with --cluster: the node faults, in turn (comma-separated)",
    )
    parser.add_argument("--isolation-seconds", type=float, default=20.0)
    parser.add_argument("--kills", type=int, help="worker kills (default 6; 0 with --cluster)")
    parser.add_argument("--broker-restarts", type=int, help="default 1; 0 with --cluster")
    parser.add_argument("--database-cuts", type=int, help="default 1; 0 with --cluster")
    parser.add_argument("--database-seconds", type=float, default=30.0)
    parser.add_argument("--broker", choices=["restart", "proxy"], default="restart")
    parser.add_argument("--mongodb-url", help="MongoDB-wire server (default: the settings' URL)")
    parser.add_argument("--batch-max-size", type=int, help="the worker's batch size")
    parser.add_argument("--relations", type=float, default=0.45, help="share of relation commands")
    parser.add_argument("--ahead", type=int, default=2_000)
    parser.add_argument(
        "--restart-after-lease",
        action="store_true",
        help="restart a killed worker only after its 5 s lease (not within it)",
    )
    parser.add_argument("--processes", type=int, default=1, help="worker processes at once")
    parser.add_argument("--partitions", type=int, default=1, help="P, PW_PARTITIONS")
    parser.add_argument(
        "--joins", type=int, help="processes joining mid-stream (default: 1 if --processes > 1)"
    )
    parser.add_argument(
        "--leaves", type=int, help="processes leaving with SIGTERM (default: 1 if --processes > 1)"
    )
    parser.add_argument(
        "--keys",
        choices=["auto", "one", "several"],
        default="auto",
        help="targets addressed through one order key each (the stream the model holds across "
        "partitions) or several (the full stream, ordered only by one process); auto: one "
        "when --partitions > 1",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds for the stream to drain (default: commands / 40, on the cluster / 20)",
    )
    parser.add_argument("--keep-database", action="store_true", help="for a closer look")
    parser.add_argument("--show", type=int, default=5, help="findings printed of each kind")
    parser.add_argument("--log-dir", help="where the workers' logs go (default: a temp dir)")
    parsed = parser.parse_args()
    parsed.keyed = parsed.keys == "one" or (parsed.keys == "auto" and parsed.partitions > 1)
    for name, usual in (("kills", 6), ("broker_restarts", 1), ("database_cuts", 1)):
        if getattr(parsed, name) is None:
            setattr(parsed, name, 0 if parsed.cluster else usual)
    faults = parsed.node_faults.split(",") if parsed.cluster else []
    if unknown := set(faults) - set(get_args(NodeFault)):
        parser.error(f"unknown node faults {sorted(unknown)}: of {get_args(NodeFault)}")
    parsed.node_faults = tuple(cast(NodeFault, fault) for fault in faults)
    result = uvloop.run(main(parsed))
    sys.exit(1 if result.findings.problems() else 0)
