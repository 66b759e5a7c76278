"""The faults a RabbitMQ cluster suffers, struck at the three-node cluster of
`scripts/rabbitmq-cluster.sh` (each node in a network namespace of its own):

- `kill-leader`: the node leading the command queue's leader (and, declared from one
  connection, the partition queues' too) is killed -9 and started again after a while;
- `isolate`: the node leading it then is cut off from the other nodes and from the workers for
  `isolation_seconds` (its link taken off the bridge), then put back;
- `rolling-restart`: every node stopped and started again in turn, each once the quorum
  queues keep a majority without it, as operators upgrade a cluster.

Each waits until the cluster is whole again before it returns, so the next fault strikes a
healthy cluster.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.error import URLError
from urllib.parse import urlsplit

from tests.integration.broker_admin import BrokerAdmin
from worker.settings import broker_addresses

NodeFault = Literal["kill-leader", "isolate", "rolling-restart"]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq-cluster.sh"


@dataclass
class Cluster:
    """The nodes behind `addresses` (a `PW_AMQP_URL` list, node n at the n-th address)."""

    addresses: str
    restart_after: float = 10.0
    """Seconds between killing a node and starting it again."""
    isolation_seconds: float = 20.0

    @property
    def nodes(self) -> int:
        return len(broker_addresses(self.addresses))

    async def strike(self, fault: NodeFault, queue: str) -> str:
        """Strike `fault`; what was done, for the run's log."""
        if fault == "rolling-restart":
            for node in range(1, self.nodes + 1):
                await self._script("node-restart", str(node))
            await self.whole()
            return f"nodes 1 to {self.nodes} restarted in turn"
        node = await self.leader(queue)
        if fault == "kill-leader":
            await self._for_a_while(node, "node-kill", self.restart_after, "node-start")
            return f"node {node} (leader of {queue}) killed -9, started {self.restart_after:g} s on"
        await self._for_a_while(node, "node-isolate", self.isolation_seconds, "node-heal")
        return f"node {node} (leader of {queue}) cut off for {self.isolation_seconds:g} s"

    async def _for_a_while(self, node: int, down: str, seconds: float, up: str) -> None:
        """`down` node, `seconds` later `up` again, then until the cluster is whole."""
        await self._script(down, str(node))
        await asyncio.sleep(seconds)
        await self._script(up, str(node))
        await self.whole()

    async def leader(self, queue: str) -> int:
        """The node (1 …) whose member of quorum queue `queue` leads, by the management API of
        the first node that answers."""
        addresses = broker_addresses(self.addresses)
        hosts = [urlsplit(address).hostname for address in addresses]
        for address, host in zip(addresses, hosts, strict=True):
            admin = BrokerAdmin(f"http://{host}:15672", address)
            try:
                shown = await asyncio.to_thread(admin.queue, queue)
            except (URLError, OSError):
                continue
            leader = str(shown.get("leader") or shown.get("node", ""))
            return hosts.index(leader.split("@", 1)[1]) + 1
        raise RuntimeError(f"no node of {self.addresses} tells the leader of {queue}")

    async def whole(self) -> None:
        """Until every node runs and sees the others."""
        await self._script("await-cluster")

    async def _script(self, *arguments: str) -> None:
        """Run the cluster script in a thread, its errors to a file: under uvloop an asyncio
        subprocess that starts a node (a detached daemon) was never seen to end."""
        await asyncio.to_thread(self._run_script, arguments)

    def _run_script(self, arguments: tuple[str, ...]) -> None:
        with tempfile.TemporaryFile() as errors:
            finished = subprocess.run(
                [str(SCRIPT), *arguments],
                env={**os.environ, "PW_RABBITMQ_NODES": str(self.nodes)},
                stdout=subprocess.DEVNULL,
                stderr=errors,
                check=False,
            )
            errors.seek(0)
            told = errors.read().decode(errors="replace").strip()
        if finished.returncode != 0:
            raise RuntimeError(f"{SCRIPT.name} {' '.join(arguments)}: {told}")
