"""How an inbox record is read (`worker.store.inbox`): which plan a command answers when
owners of several epochs planned it, and whether any of them landed."""

from __future__ import annotations

from worker.contract.common import ResultModel
from worker.store.fence import Fence, Mark, Watermark
from worker.store.inbox import Record, Target, answer_of, landed_plan, newest, plan_of

PARTITION = "database_import.partition.3"
TARGET = Target("profiles", "a" * 24)


def _record(*marks: Mark, refused_at: int | None = None) -> Record:
    plans = {}
    for mark in marks:
        result = ResultModel(error_text=f"planned by {mark.epoch}")
        target = None if mark.epoch == refused_at else TARGET
        name, plan = plan_of(result, (), target, mark, Fence(PARTITION, mark.epoch))
        plans[name] = plan
    return {"_id": "import:m1", "plans": plans}


def _text(plan: dict[str, object]) -> object:
    result = plan["result"]
    assert isinstance(result, dict)
    return result["error_text"]


def test_a_plan_landed_once_the_target_s_watermark_passed_its_mark() -> None:
    record = _record(Mark(4, 7))
    key = Fence(PARTITION, 4).key

    assert landed_plan(record, Watermark(4, Mark(4, 6))) is None
    assert landed_plan(record, Watermark(4, Mark(4, 7))) == f"{key}-4"
    assert landed_plan(record, Watermark(5, Mark(5, 1))) == f"{key}-4"


def test_a_seal_alone_is_no_landing() -> None:
    """A later owner's seal raises the fence, not the last applied mark."""
    record = _record(Mark(4, 7))

    assert landed_plan(record, Watermark(9, Mark(3, 50))) is None


def test_of_several_owners_plans_the_latest_the_watermark_passed_landed() -> None:
    record = _record(Mark(4, 7), Mark(5, 2))
    key = Fence(PARTITION, 4).key

    assert landed_plan(record, Watermark(5, Mark(4, 7))) == f"{key}-4"
    assert landed_plan(record, Watermark(5, Mark(5, 2))) == f"{key}-5"


def test_a_named_answer_wins() -> None:
    record = _record(Mark(4, 7), Mark(5, 2))
    key = Fence(PARTITION, 4).key
    record["answer"] = f"{key}-4"

    assert landed_plan(record, Watermark(5, Mark(5, 9))) == f"{key}-4"
    assert _text(answer_of(record)) == "planned by 4"


def test_the_newest_plan_is_the_latest_owner_s() -> None:
    record = _record(Mark(4, 7), Mark(5, 1))

    assert _text(newest(record)[1]) == "planned by 5"
    assert _text(answer_of(record)) == "planned by 5"


def test_a_refusal_never_landed() -> None:
    record = _record(Mark(4, 0), refused_at=4)

    assert landed_plan(record, Watermark(4, Mark(4, 99))) is None
