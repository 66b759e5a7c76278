"""Hostile bodies for the wire fuzzing of the three command queues, generated from a seed.

Every body generated here is one the contract (SPEC §3, §4, §8) refuses: random bytes, invalid
UTF-8, nesting beyond 32 levels (up to 10 000), huge strings and arrays, NUL where it is not
free text, duplicate keys whose *last* value is invalid (the last one wins), `$` and dotted keys
at any depth, integers beyond 64 bits, NaN/Infinity literals, wrong types, unknown parameters,
wrong content types and encodings, and bodies over account 1's `max_message_bytes` (8 192) or
the worker's own limit. The near-valid ones start from a valid command and change one part of
it, so the refusal must come from that part (or from an earlier, equally valid check).

`generate(kind, count, seed)` yields `Case`s; `properties` are keyword arguments for
`aio_pika.Message` that replace the defaults of `publish`. Short-string properties may be
`bytes` that are not UTF-8: publishing those needs `raw_short_strings()`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import random
import string
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from pamqp import common, encode

KINDS = ("database_import", "relations", "relations_query")
"""The queue each body is for, by its default name."""

ACCOUNT_LIMIT = 8_192
"""`max_message_bytes` of account 1 in the integration catalog."""
WORKER_LIMIT = 1_048_576
"""The worker's own `max_message_bytes` default: larger bodies are not even parsed."""

_HOLE = b'"\\u0001hole\\u0001"'
_HOLE_VALUE = "\x01hole\x01"
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    family: str
    body: bytes
    properties: dict[str, Any] = field(default_factory=dict)


def with_raw(doc: dict[str, Any], path: Path, raw: bytes) -> bytes:
    """`doc` as JSON, with the value at `path` replaced by the raw JSON text `raw` (which may
    be anything: invalid JSON, bytes that are not UTF-8)."""
    copy = orjson.loads(orjson.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _HOLE_VALUE
    text = orjson.dumps(copy)
    assert text.count(_HOLE) == 1, text
    return text.replace(_HOLE, raw)


def _hex(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(24))


def _email(rng: random.Random) -> str:
    return f"fuzz-{rng.randrange(10**9)}@example.com"


class Templates:
    """Valid commands of account 1 (the integration catalog), and where their parts are."""

    def __init__(self, kind: str, token: str, rng: random.Random) -> None:
        self.kind, self.token, self.rng = kind, token, rng

    def valid(self) -> dict[str, Any]:
        return {
            "database_import": self._import,
            "relations": self._relation,
            "relations_query": self._query,
        }[self.kind]()

    def _import(self) -> dict[str, Any]:
        rng = self.rng
        email = _email(rng)
        doc: dict[str, Any] = {
            "account_id": 1,
            "db_id": 10,
            "email": email,
            "token": self.token,
            "feedback_id": "fuzz",
            "data": {
                "_fname": "Ada",
                "city": "Paris",
                "age": 30,
                "score": 1.5,
                "vip": True,
                "interests": ["chess", "go"],
                "tier": "gold",
                "address": {"street": "Rue", "n": 1, "more": {"floor": 2}},
                "subscriptions": [
                    {
                        "resource_id": 100,
                        "channel": "email",
                        "email": email,
                        "priority": 1,
                        "custom_fields": {"source": "fuzz"},
                    }
                ],
            },
        }
        if rng.random() < 0.3:
            # the top-level `email` is no matching key then (unused): only in `data`
            del doc["email"]
            doc["data"]["email"] = email
            loyalty_id = f"L-{rng.randrange(10**9)}"  # one key per command: see test_wire_fuzz
            doc.update(matching="custom", field_name="loyalty_id", field_value=loyalty_id)
        return doc

    def _relation(self) -> dict[str, Any]:
        rng = self.rng
        head = {"account_id": 1, "token": self.token, "feedback_id": "fuzz"}
        if rng.random() < 0.3:
            action = rng.choice(["strengthen", "edit"])
            return {**head, "action": action, "relation_id": rng.randrange(1, 10**6),
                    "weights": {"weight": 1.5, "visits": 2, "active": True},
                    "relation_to_a": "Father", "priority": 50}  # fmt: skip
        return {
            **head,
            "action": rng.choice(["attach", "strengthen", "edit"]),
            "rel_id": 500,
            "profile_a": {"email": _email(rng)},
            "profile_b": {"profile_id": _hex(rng)},
            "weights": {"weight": 1.5, "visits": 2, "active": True},
            "relation_to_a": "Father",
            "relation_to_b": "Son",
            "priority": 50,
        }

    def _query(self) -> dict[str, Any]:
        rng = self.rng
        head = {"account_id": 1, "token": self.token, "feedback_id": "fuzz"}
        method = rng.choice(["get", "get_counter", "list", "single"])
        if method == "list":
            return {**head, "method": method, "contact": _hex(rng), "rel_id": 500, "limit": 10}
        if method == "single":
            return {**head, "method": method, "relation_id": rng.randrange(1, 10**6)}
        return {**head, "method": method, "rel_id": 500, "profile_id": _hex(rng), "limit": 10,
                "top_n": 5}  # fmt: skip

    def numeric_paths(self, doc: dict[str, Any]) -> list[Path]:
        """Where an integer or a number belongs (ids, counts, numeric fields, weights)."""
        paths: list[Path] = [("account_id",)]
        if self.kind == "database_import":
            paths += [("db_id",), ("data", "age"), ("data", "score"), ("data", "city"),
                      ("data", "address", "n"), ("data", "address", "more", "floor"),
                      ("data", "subscriptions", 0, "resource_id"),
                      ("data", "subscriptions", 0, "priority")]  # fmt: skip
        elif self.kind == "relations":
            paths += [("weights", "weight"), ("weights", "visits"), ("priority",)]
            paths += [("relation_id",)] if "relation_id" in doc else [("rel_id",)]
        else:
            paths += [(key,) for key in ("rel_id", "relation_id", "limit", "top_n") if key in doc]
        return paths

    def required_paths(self, doc: dict[str, Any]) -> list[Path]:
        """Required parameters and typed values: any other JSON type is refused."""
        keys = {
            "database_import": ["account_id", "db_id", "data", "email", "token"],
            "relations": ["account_id", "action", "weights", "token", "relation_to_a"],
            "relations_query": ["account_id", "method", "token", "feedback_id"],
        }[self.kind]
        paths: list[Path] = [(key,) for key in keys if key in doc]
        if "rel_id" in doc:
            paths.append(("rel_id",))
        if "profile_a" in doc:
            paths += [("profile_a",), ("profile_a", "email"), ("profile_b", "profile_id")]
        if self.kind == "relations_query":
            paths += [(key,) for key in ("contact", "profile_id", "relation_id") if key in doc]
        return paths

    def object_paths(self, doc: dict[str, Any]) -> list[Path]:
        """Objects whose keys the contract fixes or checks (an unknown or hostile key in
        them is refused)."""
        paths: list[Path] = [()]
        if self.kind == "database_import":
            paths += [("data",), ("data", "address"), ("data", "address", "more"),
                      ("data", "subscriptions", 0),
                      ("data", "subscriptions", 0, "custom_fields")]  # fmt: skip
        elif self.kind == "relations":
            paths += [("weights",)]
            paths += [("profile_a",), ("profile_b",)] if "profile_a" in doc else []
        return paths

    def text_paths(self, doc: dict[str, Any]) -> list[Path]:
        """Free text with no length limit of its own: padding there only makes a body big."""
        paths: list[Path] = [("feedback_id",)]
        if self.kind == "database_import":
            paths += [("data", "_fname"), ("data", "city"), ("data", "address", "street")]
        return paths


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _big_int(rng: random.Random, int64_edges: bool) -> bytes:
    """An integer literal of 2**64 or more (or less than -2**64); with `int64_edges`, also
    19-digit ones just outside int64 (a known finding: see test_wire_fuzz)."""
    bits = rng.choice(
        [63, 64, 64, 65, 70, 100, 200, 1000] if int64_edges else [64, 65, 70, 100, 200, 1000]
    )
    value = 2**bits + rng.randrange(2**20)
    if bits == 63 and rng.random() < 0.5:  # just beyond int64 on the negative side
        value = -(2**63) - 1 - rng.randrange(2**20)
    elif rng.random() < 0.2:
        value = -value
    return str(value).encode()


def _nested(rng: random.Random, depth: int) -> bytes:
    opens = [rng.choice([b'{"k":', b"["]) for _ in range(depth)]
    closes = [b"}" if part.startswith(b"{") else b"]" for part in reversed(opens)]
    leaf = rng.choice([b"1", b'"x"', b"null", b"{}", b"[]"])
    body = b"".join(opens) + leaf + b"".join(closes)
    if rng.random() < 0.1:  # unterminated
        body = body[: rng.randrange(len(body))]
    return body


DOLLAR_KEYS = ["$set", "$where", "$inc", "$", "$$ROOT", "$ne", "a.b", ".", "x.", ".x", "$a.b",
               "fields.email", "props.weight", "data.age"]  # fmt: skip
_IDS = [b'"1"', b"-1", b"[1]", b"1.5", b"true", b'{"$gt":0}']
_LIMITS = [b"0", b"1001", b'"10"', b"-5"]
INVALID: dict[str, list[bytes]] = {
    "account_id": [*_IDS, b"null"],
    "db_id": [*_IDS, b"null"],
    "rel_id": _IDS,
    "relation_id": _IDS,
    "resource_id": _IDS,
    "age": [b'"abc"', b"1.5", b"[1]", b'{"$inc":1}'],
    "score": [b'"x"', b"[1]", b"{}"],
    "city": [b'{"$set":1}', b"[[1]]"],
    "n": [b"[[1]]", b'{"$set":1}', b'{"a.b":1}'],
    "floor": [b"[[1]]", b'{"$set":1}', b'{"a.b":1}'],
    "priority": [b'"x"', b"1.5", b"[1]", b"true"],
    "weight": [b'"x"', b"[1]", b"{}", b"null"],
    "visits": [b'"x"', b"[1]", b"{}", b"null"],
    "limit": _LIMITS,
    "top_n": _LIMITS,
    "email": [b'"not-an-email"', b"1", b"[]", b'{"$ne":null}'],
    "token": [b"1", b"[]", b'"wrong-token-0000000000"'],
    "data": [b'"x"', b"[1]", b"1", b"null"],
    "action": [b'"explode"', b"1", b'"ATTACH"'],
    "method": [b'"explode"', b"1", b'"GET"'],
    "profile_a": [b'"x"', b"1", b"[]"],
    "profile_id": [b"1", b'{"$ne":null}', b"[]"],
    "contact": [b"1", b"[]", b'{"$ne":null}'],
    "feedback_id": [b"1", b"[]", b"{}"],
    "relation_to_a": [b"1", b'"' + b"x" * 300 + b'"'],
}
"""Values refused at each key of the templates (a wrong type, a range, a forbidden key)."""
NUL_TEXT = ["\x00", "ada\x00@example.com", "\x00gold", "email\x00", "a\x00b"]


class Generator:
    """One family per method; each returns a body (and properties) the contract refuses."""

    def __init__(
        self, kind: str, token: str, rng: random.Random, int64_edges: bool = False
    ) -> None:
        self.kind, self.rng, self.int64_edges = kind, rng, int64_edges
        self.templates = Templates(kind, token, rng)
        self.families: dict[str, Callable[[], tuple[bytes, dict[str, Any]]]] = {
            "random_bytes": self.random_bytes,
            "invalid_utf8": self.invalid_utf8,
            "deep_nesting": self.deep_nesting,
            "huge_values": self.huge_values,
            "nul": self.nul,
            "duplicate_keys": self.duplicate_keys,
            "dollar_dotted_keys": self.dollar_dotted_keys,
            "int_beyond_64_bits": self.int_beyond_64_bits,
            "nan_infinity": self.nan_infinity,
            "wrong_types": self.wrong_types,
            "unknown_parameters": self.unknown_parameters,
            "content_type_encoding": self.content_type_encoding,
            "oversize": self.oversize,
        }

    def random_bytes(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:  # JSON, but not an object
            return rng.choice([b"[]", b"1", b'"x"', b"null", b"true", b"[{}]", b"-0", b""]), {}
        noise = rng.randbytes(rng.randrange(1, 2_048))
        if roll < 0.5:  # looks like the start of an object
            return b'{"account_id":1,' + noise, {}
        return noise, {}

    def invalid_utf8(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        doc = self.templates.valid()
        bad = rng.choice([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82",
                          b"\xf8\x88\x80\x80\x80", b"\x80", b"\xf4\x90\x80\x80"])  # fmt: skip
        text = orjson.dumps(doc)
        quotes = [i for i, byte in enumerate(text) if byte == ord('"')]
        at = rng.choice(quotes) + 1  # just inside a key or a string value, or just after one
        return text[:at] + bad + text[at:], {}

    def deep_nesting(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        depth = rng.choice([33, 40, 100, 990, 1_100, 5_000, 10_000, rng.randrange(33, 10_001)])
        doc = self.templates.valid()
        if rng.random() < 0.2:
            return _nested(rng, depth), {}
        path = rng.choice(self.templates.numeric_paths(doc) + self.templates.required_paths(doc))
        return with_raw(doc, path, _nested(rng, depth)), {}

    def huge_values(self) -> tuple[bytes, dict[str, Any]]:
        """A huge string or array somewhere: over the account's limit at least."""
        rng = self.rng
        size = rng.choice([ACCOUNT_LIMIT + 1, 20_000, 100_000, rng.randrange(9_000, 300_000)])
        if rng.random() < 0.01:
            size = WORKER_LIMIT + rng.randrange(1, 100_000)
        doc = self.templates.valid()
        paths = self.templates.required_paths(doc) + self.templates.text_paths(doc)
        path = rng.choice(paths)
        if rng.random() < 0.5:
            raw = orjson.dumps(rng.choice(string.ascii_letters) * size)
        else:
            item = rng.choice([b"1", b'"tag"', b"{}", b"null", b"1.5"])
            raw = b"[" + b",".join([item] * (size // (len(item) + 1) + 1)) + b"]"
        return with_raw(doc, path, raw), {}

    def nul(self) -> tuple[bytes, dict[str, Any]]:
        """NUL where the contract refuses it: in an address, a key, a mode, a token, an id; or
        raw in a string (not JSON). NUL in free text is allowed, so never only there."""
        rng = self.rng
        doc = self.templates.valid()
        if rng.random() < 0.2:
            text = orjson.dumps(doc)
            at = text.index(b'"', rng.randrange(1, len(text) - 1) // 2) + 1
            return text[:at] + b"\x00" + text[at:], {}
        spots: list[Path] = [("token",), ("account_id",)]
        if self.kind == "database_import":
            spots += [("email",) if "email" in doc else ("data", "email"), ("data", "tier"),
                      ("data", "subscriptions", 0, "email"),
                      ("data", "subscriptions", 0, "channel")]  # fmt: skip
        elif self.kind == "relations":
            spots += [("action",)] + ([("profile_a", "email")] if "profile_a" in doc else [])
        else:
            spots += [("method",)] + [(k,) for k in ("contact", "profile_id") if k in doc]
        if rng.random() < 0.3:  # a key holding NUL, in an object whose keys are checked
            obj = _get(doc, rng.choice(self.templates.object_paths(doc)))
            obj[rng.choice(NUL_TEXT[1:])] = "x"
            return orjson.dumps(doc), {}
        path = rng.choice(spots)
        value = _get(doc, path)
        spoiled = str(value)
        at = rng.randrange(len(spoiled) + 1)
        return with_raw(doc, path, orjson.dumps(spoiled[:at] + "\x00" + spoiled[at:])), {}

    def duplicate_keys(self) -> tuple[bytes, dict[str, Any]]:
        """A key given twice, the first value valid and the last one not (the last one wins)."""
        rng = self.rng
        doc = self.templates.valid()
        paths = self.templates.numeric_paths(doc) + self.templates.required_paths(doc)
        path = rng.choice([p for p in paths if p[-1] in INVALID])
        *parent_path, key = path
        parent = _get(doc, tuple(parent_path))
        bad = rng.choice(INVALID[str(key)])
        inner = orjson.dumps(parent)[:-1] + b',"' + str(key).encode() + b'":' + bad + b"}"
        if not parent_path:
            return inner, {}
        return with_raw(doc, tuple(parent_path), inner), {}

    def dollar_dotted_keys(self) -> tuple[bytes, dict[str, Any]]:
        """An operator or dotted key, at some depth of an object the contract checks."""
        rng = self.rng
        doc = self.templates.valid()
        key = rng.choice(DOLLAR_KEYS)
        path = rng.choice(self.templates.object_paths(doc))
        obj = _get(doc, path)
        if rng.random() < 0.4 and self.kind == "database_import":
            node = doc["data"]["address"]  # deeper inside an object field: up to 30 levels
            for level in range(rng.randrange(0, 27)):
                node[f"l{level}"] = {}
                node = node[f"l{level}"]
            node[key] = rng.choice([1, "x", {"y": 1}])
        elif rng.random() < 0.3 and path:  # the value itself becomes an operator object
            *parent, last = path
            _get(doc, tuple(parent))[last] = {key: obj}
        else:
            obj[key] = rng.choice([1, "x", {"$gt": ""}, None, [1]])
        return orjson.dumps(doc), {}

    def int_beyond_64_bits(self) -> tuple[bytes, dict[str, Any]]:
        doc = self.templates.valid()
        path = self.rng.choice(self.templates.numeric_paths(doc))
        return with_raw(doc, path, _big_int(self.rng, self.int64_edges)), {}

    def nan_infinity(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"+Infinity", b"nan", b"inf",
                              b"-NaN", b"1e400", b"-1e999", b"Infinity1"])  # fmt: skip
        doc = self.templates.valid()
        path = rng.choice(self.templates.numeric_paths(doc))
        return with_raw(doc, path, literal), {}

    def wrong_types(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        doc = self.templates.valid()
        path = rng.choice(self.templates.required_paths(doc))
        value = _get(doc, path)
        choices: list[Any] = ["x1", [1], {"a": 1}, 1.5, True, -1, "", [], {}]
        if path == ("data",):
            choices = [[], "x", 1, None, True, [{"_fname": "A"}]]
        elif path in {("account_id",), ("db_id",), ("rel_id",), ("relation_id",)}:
            choices = [str(value), [value], {"id": value}, float(value) + 0.5, True, -1, None]
        elif isinstance(value, str):
            choices = [1, [value], {"v": value}, True, 1.5, None]
        elif isinstance(value, dict):
            choices = ["x", 1, [value], True]
        choices = [c for c in choices if not (c is None and path in _OPTIONAL)]
        if self.kind == "database_import" and rng.random() < 0.3:  # a field's value, unconvertible
            field_name, bad = rng.choice([("age", "abc"), ("age", 1.5), ("vip", "maybe"),
                                          ("tier", "platinum"), ("score", "x"),
                                          ("interests", {"a": 1}), ("address", "x"),
                                          ("_bdate", "not a date"), ("_regip", "999.1.1.1"),
                                          ("email", "no-at-sign"), ("phones", [[1]])])  # fmt: skip
            doc["data"][field_name] = bad
            return orjson.dumps(doc), {}
        return with_raw(doc, path, orjson.dumps(rng.choice(choices))), {}

    def unknown_parameters(self) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        doc = self.templates.valid()
        paths = [p for p in self.templates.object_paths(doc) if "custom_fields" not in p]
        paths = [p for p in paths if p[-1:] not in {("address",), ("more",)}]
        name = "x_" + "".join(
            rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(1, 12))
        )
        name = rng.choice([name, "dbId", "accountId", "account", "Token", "limit_", "data2"])
        _get(doc, rng.choice(paths))[name] = rng.choice([1, "x", None, {}, [], True])
        return orjson.dumps(doc), {}

    def content_type_encoding(self) -> tuple[bytes, dict[str, Any]]:
        """A command in another encoding or format, announced (or not) by its properties."""
        rng = self.rng
        valid = orjson.dumps(self.templates.valid())
        bodies: list[tuple[bytes, dict[str, Any]]] = [
            (gzip.compress(valid), {"content_encoding": "gzip"}),
            (zlib.compress(valid), {"content_encoding": "deflate"}),
            (base64.b64encode(valid), {"content_encoding": "base64"}),
            (valid.decode().encode("utf-16"), {"content_type": "application/json; charset=utf-16"}),
            (valid.decode().encode("utf-32-le"), {"content_encoding": "utf-32"}),
            (b"\xef\xbb\xbf" + valid, {"content_type": "application/json; charset=utf-8"}),
            (b"<command><account_id>1</account_id></command>", {"content_type": "application/xml"}),
            (b"account_id=1&db_id=10", {"content_type": "application/x-www-form-urlencoded"}),
            (b"account_id: 1\ndb_id: 10\n", {"content_type": "application/yaml"}),
            (b"\x83\xaaaccount_id\x01\xa5db_id\x0a", {"content_type": "application/msgpack"}),
        ]  # fmt: skip
        body, properties = rng.choice(bodies)
        properties = dict(properties)
        roll = rng.random()
        if roll < 0.3:  # property bytes that are not UTF-8
            name = rng.choice(["content_type", "content_encoding", "type", "app_id"])
            properties[name] = rng.choice([b"\xff\xfe", b"\xc0\xaf", b"json\xed\xa0\x80", b"\x80"])
        elif roll < 0.5:
            properties["content_type"] = rng.choice(["text/plain", "", "*/*", "application/json"])
        elif roll < 0.65:  # the worker's own header names, from a producer
            properties["headers"] = {
                rng.choice(["x-attempt", "x-original-user-id", "x-dead-letter-reason"]): rng.choice(
                    [-1, 2**62, "x", None, [1], {"a": 1}, 1.5]
                )
            }
        return body, properties

    def oversize(self) -> tuple[bytes, dict[str, Any]]:
        """A valid command padded in free text past the account's limit (or the worker's)."""
        rng = self.rng
        doc = self.templates.valid()
        size = rng.choice([ACCOUNT_LIMIT + 1, ACCOUNT_LIMIT + 100, rng.randrange(8_193, 65_536)])
        if rng.random() < 0.02:
            size = WORKER_LIMIT + 1 + rng.randrange(1_000)
        path = rng.choice(self.templates.text_paths(doc))
        base = len(orjson.dumps(doc)) - len(orjson.dumps(_get(doc, path)))
        pad = max(size - base - 2, 1)
        filler = rng.choice(["x", "é", "\x00", "\u2028", " "])  # NUL is fine in free text
        text = (filler * pad)[: max(pad // len(filler.encode()), 1)]
        body = with_raw(doc, path, orjson.dumps(text))
        while len(body) <= ACCOUNT_LIMIT:  # escapes and multi-byte fillers: make sure
            text += "x" * (ACCOUNT_LIMIT - len(body) + 1)
            body = with_raw(doc, path, orjson.dumps(text))
        return body, {}


_OPTIONAL = {("token",), ("feedback_id",), ("relation_to_a",), ("weights",), ("rel_id",)}
"""Optional parameters: `null` there means "not given", which can be valid."""


def generate(
    kind: str, count: int, seed: int, token: str, int64_edges: bool = False
) -> Iterator[Case]:
    """`count` refused bodies for queue `kind`, every family in turn, reproducible by seed."""
    rng = random.Random(f"{seed}:{kind}")
    generator = Generator(kind, token, rng, int64_edges)
    names = list(generator.families)
    for index in range(count):
        family = names[index % len(names)]
        body, properties = generator.families[family]()
        yield Case(family, body, properties)


@contextlib.contextmanager
def raw_short_strings() -> Iterator[None]:
    """Let this process publish `bytes` as an AMQP short string, as they are: a producer
    written with another client (a Go string, say) can send any bytes there."""
    original = encode.METHODS["shortstr"]

    def short_string(value: Any) -> bytes:
        if isinstance(value, bytes):
            return bytes(common.Struct.byte.pack(len(value))) + value
        return bytes(original(value))

    encode.METHODS["shortstr"] = short_string
    try:
        yield
    finally:
        encode.METHODS["shortstr"] = original


def message(case: Case, reply_to: str) -> tuple[str, aio_pika.Message]:
    """The AMQP message of a case, persistent, with a fresh correlation and message id."""
    correlation_id = uuid.uuid4().hex
    properties: dict[str, Any] = {
        "content_type": "application/json",
        "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
        "message_id": correlation_id,
        "correlation_id": correlation_id,
        "reply_to": reply_to,
        **case.properties,
    }
    return correlation_id, aio_pika.Message(case.body, **properties)


async def publish_all(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    cases: Iterable[Case],
    reply_to: str,
    window: int = 200,
) -> dict[str, Case]:
    """Publish every case (confirmed, `window` unconfirmed at most); by correlation id."""
    sent: dict[str, Case] = {}
    pending: list[Any] = []
    for case in cases:
        correlation_id, msg = message(case, reply_to)
        sent[correlation_id] = case
        pending.append(channel.default_exchange.publish(msg, routing_key=queue))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return sent
