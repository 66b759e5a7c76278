"""How an inbox record is read (`worker.store.inbox`): which plan a command answers when
owners of several epochs planned it."""

from __future__ import annotations

from worker.contract.common import ResultModel
from worker.store.fence import Fence
from worker.store.inbox import Record, answer_of, landed_plan, newest, plan_of
from worker.store.markers import Target

PARTITION = "database_import.partition.3"
TARGET = Target("profiles", "a" * 24)


def _record(*epochs: int, refused_at: int | None = None) -> Record:
    plans = {}
    for epoch in epochs:
        result = ResultModel(error_text=f"planned by {epoch}")
        target = None if epoch == refused_at else TARGET
        name, plan = plan_of(result, (), target, Fence(PARTITION, epoch))
        plans[name] = plan
    return {"_id": "import:m1", "plans": plans}


def _text(plan: dict[str, object]) -> object:
    result = plan["result"]
    assert isinstance(result, dict)
    return result["error_text"]


def test_the_plan_that_landed_is_the_one_whose_epoch_the_document_carries() -> None:
    """A stale owner's creation landed after its successor planned the command again."""
    record = _record(4, 5)
    key = Fence(PARTITION, 4).key

    name, plan = landed_plan(record, {key: 4, "other-partition": 9})

    assert _text(plan) == "planned by 4"
    assert name == f"{key}-4"


def test_without_its_epoch_on_the_document_the_latest_owner_s_plan_landed() -> None:
    record = _record(4, 5)

    assert _text(landed_plan(record, {})[1]) == "planned by 5"
    assert _text(newest(record)) == "planned by 5"


def test_a_finished_command_answers_the_plan_named_else_the_latest() -> None:
    record = _record(4, 5)
    assert _text(answer_of(record)) == "planned by 5"

    record["answer"] = f"{Fence(PARTITION, 4).key}-4"
    assert _text(answer_of(record)) == "planned by 4"


def test_epochs_compare_as_numbers() -> None:
    assert _text(newest(_record(9, 10))) == "planned by 10"


def test_a_refusal_is_never_the_plan_that_landed() -> None:
    record = _record(4, 5, refused_at=5)
    key = Fence(PARTITION, 5).key

    assert _text(landed_plan(record, {key: 5})[1]) == "planned by 5", "none matches: latest"
    assert _text(landed_plan(record, {key: 4})[1]) == "planned by 4"
