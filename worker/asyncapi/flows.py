"""The command routes of the topology, each with the messages it takes and answers with."""

from __future__ import annotations

from dataclasses import dataclass

from worker.domain.order import CommandKind
from worker.runtime.topology import Route
from worker.settings import Settings


@dataclass(frozen=True)
class Flow:
    """One command queue: the messages it takes, the answer each gets, where they all go."""

    key: str
    """Stem of the channel and operation ids."""
    route: Route
    commands: tuple[str, ...]
    answer: str
    description: str
    order: CommandKind | None = None
    """The order keys of a command queue, which is partitioned by them (SPEC §9)."""

    @property
    def commands_id(self) -> str:
        return f"{self.key}{'Commands' if self.route.result_queue else 'Requests'}"

    @property
    def answers_id(self) -> str:
        return f"{self.key}{'Results' if self.route.result_queue else 'Replies'}"

    @property
    def partitions_id(self) -> str:
        """The channel of the partition exchange."""
        return f"{self.key}Partitions"

    @property
    def partition_queues_id(self) -> str:
        return f"{self.key}PartitionQueues"


def flows(settings: Settings) -> list[Flow]:
    """The routes of `worker.runtime.topology.routes`, each with its messages."""
    imports = Route(settings.import_queue, settings.import_result_queue)
    relations = Route(settings.relations_queue, settings.relations_result_queue)
    queries = Route(settings.relations_query_queue, None)
    return [
        Flow(
            "import",
            imports,
            ("importCommand", "flatImportCommand"),
            "importResult",
            "Profile import commands (SPEC §4).",
            "imports",
        ),
        Flow(
            "relation",
            relations,
            ("relationCommand",),
            "relationResult",
            "Relation commands (SPEC §5).",
            "relations",
        ),
        Flow(
            "query",
            queries,
            ("relationQuery",),
            "queryAnswer",
            "Read requests (SPEC §6), answered to their `reply_to`; one without it is refused "
            "(400) and dead-lettered.",
        ),
    ]
