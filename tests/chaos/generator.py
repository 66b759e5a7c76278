"""A seeded stream of mixed commands, with copies, for the chaos suite.

Imports and relation commands travel on two queues that the worker consumes concurrently, so
the stream keeps them independent: relation commands address only the profiles of the setup
phase (created before any fault), and no import ever changes an email. Each queue's outcome
then depends on its own order alone, which is what the reference model folds.

By default the stream also reaches one profile through several order keys (by email and by
`profile_id`), one relation through several (each side by email or by id) and lets profiles
contend for one unique value: one process orders all of that, since it applies a queue in
queue order whatever the keys. Across P > 1 partitions only commands of one order key keep
their order (SPEC §9), so `Mix(keyed=True)` draws a stream whose commands depend on each other
only within one order key, the stream the model holds for any number of partitions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.integration.conftest import TOKEN

Queue = Literal["imports", "relations"]

SEEDED = 8
"""Profiles of database 10 made in the setup phase: updated by imports, related by relations."""
PARTNERS = 4
"""Profiles of database 11 made in the setup phase: side B of relation type 500."""
CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Doha")
TAGS = ("red", "green", "blue", "cyan", "pink", "gray")
TIERS = ("bronze", "silver", "gold")
LOYALTY = ("L-1", "L-2", "L-3", "L-4")
LABELS = ("Father", "Son", "Friend", "Boss", "Peer")
PAIRS: tuple[tuple[int, int, int], ...] = (
    (500, 0, 0),
    (500, 0, 1),
    (500, 1, 1),
    (500, 2, 3),
    (500, 3, 0),
    (500, 4, 2),
    (501, 0, 1),
    (501, 1, 0),
    (501, 5, 6),
)
"""(rel_id, index of side A, index of side B): few pairs, so commands overlap on each."""


@dataclass(frozen=True)
class Message:
    """One publication: a message id and its body, bound for one queue."""

    queue: Queue
    message_id: str
    body: dict[str, Any]


@dataclass
class Stream:
    """The chaos stream in publish order, copies included."""

    messages: list[Message] = field(default_factory=list)
    copies: dict[str, int] = field(default_factory=dict)
    """How many times each message id is published (ids published once included)."""


def seeded_email(index: int) -> str:
    return f"seed{index}@chaos.test"


def partner_email(index: int) -> str:
    return f"partner{index}@chaos.test"


def setup(seed: int) -> list[Message]:
    """The profiles that relation commands address, created once each, before any fault."""
    chance = random.Random(seed)
    messages = [
        _import(f"s{seed}-setup-a{n}", seeded_email(n), {"_fname": "Seed", "age": 30 + n})
        for n in range(SEEDED)
    ]
    messages += [
        _import(f"s{seed}-setup-b{n}", partner_email(n), {"_fname": "Partner"}, db_id=11)
        for n in range(PARTNERS)
    ]
    chance.shuffle(messages)
    return messages


@dataclass(frozen=True)
class Mix:
    """What the stream may contain besides plain updates and relation commands."""

    duplicated: float = 0.15
    """The share of message ids published two to four times."""
    relations: float = 0.45
    """The share of relation commands (the rest are imports)."""
    keyed: bool = False
    """One order key per target: profiles of the setup updated by email only (never by
    `profile_id`), each side of each relation pair addressed always alike (by email or by id,
    fixed per pair and side), unique values owned by one profile each (`L-2:<email>`, taken
    and given up by it alone, so never refused 435)."""


def stream(seed: int, commands: int, ids: Mapping[str, str], mix: Mix | None = None) -> Stream:
    """`commands` commands (with distinct message ids), a share of them published two to four
    times, each extra copy either right after the first or up to 300 commands later. `ids`
    maps the setup's emails to their profile ids, for matching by id."""
    mix = mix or Mix()
    writer = _Writer(random.Random(seed), ids, mix)
    result = Stream()
    delayed: list[tuple[int, Message]] = []
    for n in range(commands):
        due = [message for at, message in delayed if at <= n]
        delayed = [(at, message) for at, message in delayed if at > n]
        result.messages += due
        message = writer.command(f"s{seed}-{n:06d}")
        result.messages.append(message)
        copies = writer.chance.randint(2, 4) if writer.chance.random() < mix.duplicated else 1
        result.copies[message.message_id] = copies
        for _ in range(copies - 1):
            if writer.chance.random() < 0.5:
                result.messages.append(message)
            else:
                delayed.append((n + writer.chance.randint(1, 300), message))
    result.messages += [message for _, message in sorted(delayed, key=lambda item: item[0])]
    return result


def _import(message_id: str, email: str, data: dict[str, Any], **extra: Any) -> Message:
    body = {"account_id": 1, "db_id": 10, "email": email, "token": TOKEN, "data": data, **extra}
    return Message("imports", message_id, body)


class _Writer:
    """Draws one command at a time; remembers the fresh emails it has created."""

    def __init__(self, chance: random.Random, ids: Mapping[str, str], mix: Mix) -> None:
        self.chance = chance
        self._ids = ids
        self._mix = mix
        self._fresh: list[str] = []

    def command(self, message_id: str) -> Message:
        if self.chance.random() >= self._mix.relations:
            return self._import(message_id)
        return Message("relations", message_id, self._relation())

    def _import(self, message_id: str) -> Message:
        roll, chance = self.chance.random(), self.chance
        if roll < 0.12 or not self._fresh:
            self._fresh.append(f"fresh{len(self._fresh)}@chaos.test")
            email = self._fresh[-1]
            return _import(message_id, self._cased(email), self._data(email, 1, 4))
        if roll < 0.22:  # the same fresh email again: a creation or an update, by queue order
            email = chance.choice(self._fresh[-20:])
            return _import(message_id, self._cased(email), self._data(email))
        if roll < 0.25:  # update only: 404 for an email nobody created
            email = chance.choice([f"never{len(self._fresh)}@chaos.test", seeded_email(0)])
            return _import(message_id, email, self._data(email), update_only=True)
        if roll < 0.28:
            return _import(message_id, seeded_email(1), {"nickname": "x"})  # 400: unknown
        email = seeded_email(chance.randrange(SEEDED))
        # one profile by email in some commands, by id in others (another order key)
        if chance.random() < 0.2 and not self._mix.keyed:
            keys = {"matching": "profile_id", "profile_id": self._ids[email]}
            message = _import(message_id, email, self._data(email), **keys)
            del message.body["email"]
            return message
        return _import(message_id, self._cased(email), self._data(email))

    def _cased(self, email: str) -> str:
        """The email as producers send it: any case, sometimes padded (matching ignores both)."""
        chance = self.chance
        cased = "".join(c.upper() if chance.random() < 0.2 else c for c in email)
        return f" {cased} " if chance.random() < 0.05 else cased

    def _data(self, owner: str, least: int = 1, most: int = 3) -> dict[str, Any]:
        """The fields of an import for the profile of email `owner`."""
        names = ["city", "age", "score", "interests", "tier", "vip"]
        names += ["loyalty_id"]  # unique values taken, given up, taken by another
        names = self.chance.sample(names, self.chance.randint(least, most))
        return {name: self._update(name, owner) for name in names}

    def _update(self, name: str, owner: str) -> Any:
        chance = self.chance
        roll = chance.random()
        if roll < 0.15 and name != "interests":
            return {"action": "unset"}
        if name == "age" and roll < 0.6:
            delta = chance.randint(-3, 5)
            return {"action": "incr", "value": str(delta) if roll < 0.2 else delta}
        if name == "score" and roll < 0.7:
            return {"action": "incr", "value": chance.choice([0.25, -1.5, 2, 0.75, 0])}
        if name == "interests":
            return self._tags(roll)
        value = self._value(name)
        if name == "loyalty_id" and self._mix.keyed:
            value = f"{value}:{owner}"  # this profile's own: no other key contends for it
        return {"action": "set", "value": value} if chance.random() < 0.3 else value

    def _value(self, name: str) -> Any:
        chance = self.chance
        if name == "city":
            return chance.choice(CITIES)
        if name == "age":
            return chance.randint(18, 90)
        if name == "score":
            return chance.choice([1.5, 3.25, 0.0, 10])
        if name == "tier":
            return chance.choice(TIERS)
        if name == "vip":
            return chance.random() < 0.5
        return chance.choice(LOYALTY)

    def _tags(self, roll: float) -> Any:
        tags = self.chance.sample(TAGS, self.chance.randint(1, 3))
        given: Any = ", ".join(tags) if self.chance.random() < 0.5 else tags
        if roll < 0.45:
            return {"action": "add", "value": given}
        if roll < 0.8:
            return {"action": "delete", "value": given}
        return {"action": "unset"} if roll < 0.9 else tags

    def _relation(self) -> dict[str, Any]:
        chance = self.chance
        pair = chance.randrange(len(PAIRS))  # as chance.choice(PAIRS) draws
        rel_id, a, b = PAIRS[pair]
        action = chance.choices(["attach", "strengthen", "edit", "detach"], [2, 4, 3, 2])[0]
        side_b = partner_email(b) if rel_id == 500 else seeded_email(b)
        body: dict[str, Any] = {
            "action": action,
            "account_id": 1,
            "rel_id": rel_id,
            "profile_a": self._side(seeded_email(a), pair % 2 == 0),
            "profile_b": self._side(side_b, pair % 3 == 0),
            "token": TOKEN,
        }
        if chance.random() < 0.03:
            body["profile_b"] = {"email": "ghost@nowhere.test"}  # 404: no such profile
        if action == "detach":
            return body
        body["weights"] = self._weights(rel_id, action)
        if chance.random() < 0.03:
            body["weights"]["bogus"] = 1  # 400: not a declared property
        if action != "strengthen" and chance.random() < 0.4:
            body[chance.choice(["relation_to_a", "relation_to_b"])] = chance.choice(LABELS)
        if action != "strengthen" and chance.random() < 0.3:
            body["priority"] = chance.randint(0, 100)
        return body

    def _side(self, email: str, keyed_by_id: bool) -> dict[str, str]:
        """By id or by email, drawn; with `Mix.keyed`, `keyed_by_id` says which, always."""
        by_id = keyed_by_id if self._mix.keyed else self.chance.random() < 0.5
        if by_id:
            return {"profile_id": self._ids[email]}
        return {"email": self._cased(email)}

    def _weights(self, rel_id: int, action: str) -> dict[str, Any]:
        chance = self.chance
        if rel_id == 501:
            return {"closeness": chance.randint(-2, 4)} if chance.random() < 0.9 else {}
        weights: dict[str, Any] = {}
        if chance.random() < 0.7:
            weights["weight"] = chance.randint(-3, 6)
        if chance.random() < 0.4:
            weights["visits"] = chance.randint(0, 3)
        if chance.random() < 0.3 or (action == "strengthen" and not weights):
            weights["active"] = chance.random() < 0.5
        return weights
