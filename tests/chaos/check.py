"""What a chaos run left behind, held against the reference model: pure, so the same check
serves the integration test, the by-hand driver and the processors' run in `test_model.py`.

The worker's ids are mapped through what it stored: each profile key to the stored profile of
that email, each relation incarnation to the one `relation_id` its answers carry.

Order per key is also checked directly, whatever the model says: the commands of one order key
(SPEC §9, as the worker derives it) that caused events must have been decided in the order
they were first published, by the `occurred_at` of their events (the time of the round that
decided them, kept by the inbox for events published again), however many processes shared
the key's partition over time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.chaos.generator import Message
from tests.chaos.model import Answer, Expected, Model, ProfileKey, RelationKey, RelationState
from worker.domain.order import order_key_of

Incarnation = tuple[RelationKey, int]


@dataclass
class Findings:
    """Every difference between the run and the model, by kind; empty lists: a clean run."""

    lost: list[str] = field(default_factory=list)
    """Message ids (or copies of one) never answered."""
    divergent: list[str] = field(default_factory=list)
    """Message ids whose copies were answered differently (none of them with 500)."""
    divergent_after_500: list[str] = field(default_factory=list)
    """Message ids one of whose copies got 500 (retries spent) and another a real answer."""
    wrong_answers: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    missing_events: list[str] = field(default_factory=list)
    unexpected_events: list[str] = field(default_factory=list)
    divergent_events: list[str] = field(default_factory=list)
    """Events of one id published more than once with different contents."""
    out_of_order: list[str] = field(default_factory=list)
    """Commands decided before a command of their order key published ahead of them."""
    codes: Counter[tuple[int, int]] = field(default_factory=Counter)
    """Wrong answers by (expected error, answered error), e.g. (0, 500) for valid commands
    that ran out of retries."""
    duplicate_events: int = 0
    """Events published again alike (allowed: consumers dedupe on message_id + event)."""

    def problems(self) -> dict[str, list[str]]:
        found = {name: value for name, value in vars(self).items() if isinstance(value, list)}
        return {name: value for name, value in found.items() if value}

    @property
    def double_applied(self) -> int:
        """Commands decided twice: two different successful answers, or one event published
        with two different contents (a copy replayed from the inbox is identical)."""
        return len({_id_of(item) for item in [*self.divergent, *self.divergent_events]})


def _id_of(finding: str) -> str:
    """The message id a finding starts with."""
    return finding.split(":")[0].split(" ")[0]


def check(
    model: Model,
    copies: Mapping[str, int],
    answers: Mapping[str, Sequence[dict[str, Any]]],
    events: Iterable[dict[str, Any]],
    profiles: Iterable[dict[str, Any]],
    relations: Iterable[dict[str, Any]],
    published: Sequence[Message] = (),
) -> Findings:
    """`copies`: how many times each message id was published (and confirmed), at least;
    `published`: the messages in publish order, for the order per key (none: not checked)."""
    events = list(events)
    found = Findings()
    _compare_order(published, events, found)
    ids = _profile_ids(profiles, found)
    keys = {profile_id: key for key, (profile_id, _) in ids.items()}
    _compare_profiles(model, ids, found)
    stored = _relations(relations, keys, found)
    incarnations = _compare_answers(model, copies, answers, ids, found)
    _compare_relations(model, stored, incarnations, found)
    _compare_events(model, events, ids, incarnations, found)
    return found


def _profile_ids(
    profiles: Iterable[dict[str, Any]], found: Findings
) -> dict[ProfileKey, tuple[str, dict[str, Any]]]:
    """Each stored profile by its key: its id and fields; two of one key is a finding."""
    ids: dict[ProfileKey, tuple[str, dict[str, Any]]] = {}
    for doc in profiles:
        key = (int(doc["db_id"]), str(doc["fields"].get("email", "")).strip().lower())
        if key in ids:
            found.profiles.append(f"{key}: stored twice ({ids[key][0]}, {doc['_id']})")
        ids[key] = (str(doc["_id"]), doc["fields"])
    return ids


def _compare_profiles(
    model: Model, ids: Mapping[ProfileKey, tuple[str, dict[str, Any]]], found: Findings
) -> None:
    for key in sorted({*model.profiles, *ids}):
        expected, stored = model.profiles.get(key), ids[key][1] if key in ids else None
        if expected != stored:
            found.profiles.append(f"{key}: expected {expected}, stored {stored}")


def _relations(
    docs: Iterable[dict[str, Any]], keys: Mapping[str, ProfileKey], found: Findings
) -> dict[RelationKey, tuple[int, RelationState]]:
    stored: dict[RelationKey, tuple[int, RelationState]] = {}
    for doc in docs:
        side_a, side_b = keys.get(str(doc["profile_id_a"])), keys.get(str(doc["profile_id_b"]))
        if side_a is None or side_b is None:
            found.relations.append(f"relation {doc['_id']}: a side is no stored profile")
            continue
        key = (int(doc["rel_id"]), side_a, side_b)
        if key in stored:
            found.relations.append(f"{key}: stored twice ({stored[key][0]}, {doc['_id']})")
        stored[key] = (int(doc["_id"]), RelationState(0, doc.get("props") or {}, *_labels(doc)))
    return stored


def _labels(doc: dict[str, Any]) -> tuple[str | None, str | None, int]:
    return doc.get("relation_to_a"), doc.get("relation_to_b"), int(doc.get("priority", 50))


def _compare_relations(
    model: Model,
    stored: Mapping[RelationKey, tuple[int, RelationState]],
    incarnations: Mapping[Incarnation, int],
    found: Findings,
) -> None:
    for key in sorted({*model.relations, *stored}, key=str):
        expected = model.relations.get(key)
        relation_id, state = stored.get(key, (None, None))
        if expected is None or state is None:
            found.relations.append(f"{key}: expected {expected}, stored {state}")
            continue
        if state != RelationState(0, *_without_incarnation(expected)):
            found.relations.append(f"{key}: expected {expected}, stored {state}")
        answered = incarnations.get((key, expected.incarnation))
        if answered is not None and answered != relation_id:
            found.relations.append(f"{key}: answered as {answered}, stored as {relation_id}")


def _without_incarnation(state: RelationState) -> tuple[Any, ...]:
    return state.props, state.relation_to_a, state.relation_to_b, state.priority


def _compare_answers(
    model: Model,
    copies: Mapping[str, int],
    answers: Mapping[str, Sequence[dict[str, Any]]],
    ids: Mapping[ProfileKey, tuple[str, dict[str, Any]]],
    found: Findings,
) -> dict[Incarnation, int]:
    """Answers against the model; the relation id each incarnation was answered with."""
    incarnations: dict[Incarnation, int] = {}
    for message_id, expected in model.answers.items():
        given = answers.get(message_id, [])
        wanted = copies.get(message_id, 1)
        if len(given) < wanted:
            found.lost.append(f"{message_id}: {len(given)} answers to {wanted} copies")
        if not given:
            continue
        if any(answer != given[0] for answer in given):
            failed = any(answer.get("error") == 500 for answer in given)
            kind = found.divergent_after_500 if failed else found.divergent
            kind.append(f"{message_id}: {_differences(given)}")
        problem = _answer_problem(expected, given[0], ids, incarnations)
        if given[0].get("error") != expected.error:
            found.codes[(expected.error, int(given[0].get("error", -1)))] += 1
        if problem:
            found.wrong_answers.append(f"{message_id}: {problem}; expected {expected}")
    by_id = Counter(incarnations.values())
    for incarnation, relation_id in incarnations.items():
        if by_id[relation_id] > 1:
            found.wrong_answers.append(f"relation id {relation_id} answered for {incarnation}")
    return incarnations


def _differences(answers: Sequence[dict[str, Any]]) -> str:
    """What differs between the answers to one command's copies, key by key."""
    keys = sorted({key for answer in answers for key in answer}, key=str)
    differing = [k for k in keys if len({repr(answer.get(k)) for answer in answers}) > 1]
    return "; ".join(f"{k}: {[answer.get(k) for answer in answers]}" for k in differing)


def _answer_problem(
    expected: Answer,
    given: dict[str, Any],
    ids: Mapping[ProfileKey, tuple[str, dict[str, Any]]],
    incarnations: dict[Incarnation, int],
) -> str | None:
    if given.get("error") != expected.error:
        return f"error {given.get('error')} ({given.get('error_text')})"
    if expected.error:
        return None
    if bool(given.get("created")) != expected.created:
        return f"created {given.get('created')}"
    if expected.profile is not None:
        stored_id = ids.get(expected.profile, ("?",))[0]
        return None if given.get("profile_id") == stored_id else f"profile {given['profile_id']}"
    assert expected.relation is not None
    (_, side_a, side_b), _ = expected.relation
    sides = (ids.get(side_a, ("?",))[0], ids.get(side_b, ("?",))[0])
    if (given.get("profile_a"), given.get("profile_b")) != sides:
        return f"sides {given.get('profile_a')}, {given.get('profile_b')}"
    if given.get("props") != expected.props:
        return f"props {given.get('props')}"
    known = incarnations.setdefault(expected.relation, int(given["relation_id"]))
    return None if known == given["relation_id"] else f"relation_id {given['relation_id']}"


def _compare_events(
    model: Model,
    events: Iterable[dict[str, Any]],
    ids: Mapping[ProfileKey, tuple[str, dict[str, Any]]],
    incarnations: Mapping[Incarnation, int],
    found: Findings,
) -> None:
    seen: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        seen[(str(event.get("message_id")), str(event.get("event")))].append(event)
    wanted = {
        (message_id, expected.event): expected
        for message_id, expecteds in model.events.items()
        for expected in expecteds
    }
    for (message_id, name), expected in wanted.items():
        published = seen.get((message_id, name))
        if not published:
            found.missing_events.append(f"{message_id} {name}")
            continue
        found.duplicate_events += len(published) - 1
        if any(_content(e) != _content(published[0]) for e in published):
            found.divergent_events.append(f"{message_id} {name}: {published}")
        problem = _event_problem(expected, published[0], ids, incarnations)
        if problem:
            found.unexpected_events.append(f"{message_id} {name}: {problem}; expected {expected}")
    for message_id, name in seen.keys() - wanted.keys():
        found.unexpected_events.append(f"{message_id} {name}: {seen[(message_id, name)]}")


def _compare_order(
    published: Sequence[Message], events: Iterable[dict[str, Any]], found: Findings
) -> None:
    """Per order key, the commands that caused events, in the order of their first copy: the
    time each was decided (its events' earliest `occurred_at`) must never go back."""
    decided: dict[str, str] = {}
    for event in events:
        message_id, when = str(event.get("message_id")), str(event.get("occurred_at"))
        decided[message_id] = min(when, decided.get(message_id, when))  # RFC 3339, one format
    latest: dict[str, tuple[str, str]] = {}
    seen: set[str] = set()
    for message in published:
        if message.message_id in seen:
            continue  # a later copy: its position says nothing
        seen.add(message.message_id)
        at = decided.get(message.message_id)
        key = order_key_of(message.queue, orjson.dumps(message.body), 1 << 20)
        if at is None or key is None:
            continue
        ahead = latest.get(key)
        if ahead is not None and at < ahead[1]:
            found.out_of_order.append(
                f"{message.message_id}: decided at {at}, before {ahead[0]} ({ahead[1]}), "
                f"published ahead of it, key {key}"
            )
        if ahead is None or at > ahead[1]:
            latest[key] = (message.message_id, at)


def _content(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its delivery details: what two alike publications share."""
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _event_problem(
    expected: Expected,
    event: dict[str, Any],
    ids: Mapping[ProfileKey, tuple[str, dict[str, Any]]],
    incarnations: Mapping[Incarnation, int],
) -> str | None:
    if expected.profile is not None:
        if event.get("profile_id") != ids.get(expected.profile, ("?",))[0]:
            return f"profile {event.get('profile_id')}"
        changed = tuple(event.get("changed_fields") or ())
        return None if changed == expected.changed_fields else f"changed {changed}"
    assert expected.relation is not None
    relation_id = incarnations.get(expected.relation)
    if relation_id is not None and event.get("relation_id") != relation_id:
        return f"relation_id {event.get('relation_id')}"
    state = expected.state
    if state is not None and (
        event.get("props"),
        event.get("relation_to_a"),
        event.get("relation_to_b"),
        event.get("priority"),
    ) != _without_incarnation(state):
        return f"state {event}"
    return None
