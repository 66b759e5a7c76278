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


def _name(mark: Mark) -> str:
    return f"{Fence(PARTITION, mark.epoch).key}-{mark.epoch}-{mark.number}"


def _text(plan: dict[str, object]) -> object:
    result = plan["result"]
    assert isinstance(result, dict)
    return result["error_text"]


def test_a_plan_landed_once_its_owner_s_later_mark_is_on_the_target() -> None:
    record = _record(Mark(4, 7))

    assert landed_plan(record, TARGET, Watermark(4, Mark(4, 6))) is None
    assert landed_plan(record, TARGET, Watermark(4, Mark(4, 7))) == _name(Mark(4, 7))
    assert landed_plan(record, TARGET, Watermark(4, Mark(4, 9))) == _name(Mark(4, 7))


def test_a_later_owner_s_mark_follows_the_earlier_owner_s_write() -> None:
    """A later owner writes a document only after the earlier owner's plans for it are
    settled: found landed, or sealed out and decided again (then its own plan is newer)."""
    record = _record(Mark(4, 7))

    assert landed_plan(record, TARGET, Watermark(5, Mark(5, 1))) == _name(Mark(4, 7))


def test_a_plan_landed_only_on_its_own_target() -> None:
    record = _record(Mark(4, 7))
    other = Target("profiles", "b" * 24)

    assert landed_plan(record, other, Watermark(4, Mark(4, 7))) is None


def test_a_seal_alone_is_no_landing() -> None:
    """A later owner's seal raises the fence, not the last applied mark."""
    record = _record(Mark(4, 7))

    assert landed_plan(record, TARGET, Watermark(9, Mark(3, 50))) is None


def test_of_several_owners_plans_the_latest_the_target_s_mark_passed_landed() -> None:
    record = _record(Mark(4, 7), Mark(5, 2))

    assert landed_plan(record, TARGET, Watermark(5, Mark(4, 7))) == _name(Mark(4, 7))
    assert landed_plan(record, TARGET, Watermark(5, Mark(5, 1))) == _name(Mark(4, 7))
    assert landed_plan(record, TARGET, Watermark(5, Mark(5, 2))) == _name(Mark(5, 2))
    assert landed_plan(record, TARGET, Watermark(5, Mark(4, 6))) is None


def test_a_named_answer_wins() -> None:
    record = _record(Mark(4, 7), Mark(5, 2))
    record["answer"] = _name(Mark(4, 7))

    assert landed_plan(record, TARGET, Watermark(5, Mark(5, 9))) == _name(Mark(4, 7))
    assert _text(answer_of(record)) == "planned by 4"


def test_the_newest_plan_is_the_latest_owner_s() -> None:
    record = _record(Mark(4, 7), Mark(5, 1))

    assert _text(newest(record)[1]) == "planned by 5"
    assert _text(answer_of(record)) == "planned by 5"


def test_a_refusal_never_landed() -> None:
    record = _record(Mark(4, 0), refused_at=4)

    assert landed_plan(record, TARGET, Watermark(4, Mark(4, 99))) is None
