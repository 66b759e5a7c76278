"""Lossless conversion of incoming values to a field's declared type (SPEC §4.3).

Form-like producers send strings ("123" for an int): those convert when nothing is lost.
Anything else is a 400 naming the field.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from worker.domain.shared.catalog import FieldSpec
from worker.domain.shared.identity import normalize_email, normalize_phone
from worker.errors import InvalidCommand

_INT = re.compile(r"^[+-]?\d+$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _bad(spec: FieldSpec, value: Any, expected: str) -> InvalidCommand:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return InvalidCommand(f"invalid value of field '{spec.name}': {shown} is not {expected}")


def _to_string(spec: FieldSpec, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(spec, value, "a string")


def _to_int(spec: FieldSpec, value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT.match(value.strip()):
        number = int(value.strip())
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise _bad(spec, value, "a 64-bit integer")
    return number


def _to_float(spec: FieldSpec, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(spec, value, "a number") from None
    else:
        raise _bad(spec, value, "a number")
    if not math.isfinite(number):
        raise _bad(spec, value, "a finite number")
    return number


def _to_bool(spec: FieldSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(spec, value, "a boolean")


def _to_date(spec: FieldSpec, value: Any) -> datetime:
    """RFC 3339 or YYYY-MM-DD, stored as a UTC datetime."""
    if not isinstance(value, str):
        raise _bad(spec, value, "a date (RFC 3339 or YYYY-MM-DD)")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(spec, value, "a date (RFC 3339 or YYYY-MM-DD)") from None
    if moment.tzinfo is None:
        raise _bad(spec, value, "a date with a time zone")
    return moment.astimezone(UTC)


def to_tags(spec: FieldSpec, value: Any) -> list[str]:
    """A list of strings, or one comma-separated string; trimmed, unique, in order."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _bad(spec, value, "a list of tags")
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _to_email(spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(spec, value, "an email address")
    normalize_email(value, spec.name)
    return value.strip()


def _to_phone(spec: FieldSpec, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _bad(spec, value, "a phone number")
    return normalize_phone(value, spec.name)


def _to_phones(spec: FieldSpec, value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return list(dict.fromkeys(_to_phone(spec, item) for item in items))


def _to_ip(spec: FieldSpec, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value.strip() if isinstance(value, str) else value))
    except ValueError:
        raise _bad(spec, value, "an IP address") from None


def _to_enum(spec: FieldSpec, value: Any) -> str:
    text = _to_string(spec, value)
    if spec.values is None or text not in spec.values:
        raise _bad(spec, value, f"one of {list(spec.values or ())}")
    return text


def _to_object(spec: FieldSpec, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(spec, value, "an object")
    check_keys(value, spec.name)
    return value


def check_keys(value: Any, path: str) -> None:
    """Refuse what MongoDB would misread or cannot store: operator or dotted keys, nested
    arrays, integers beyond 64 bits, at any depth."""
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidCommand(f"integer out of the 64-bit range in field '{path}'")
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key or "\x00" in key:
                raise InvalidCommand(f"forbidden key '{key}' in field '{path}'")
            check_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                raise InvalidCommand(f"nested arrays are not allowed in field '{path}'")
            check_keys(item, path)


CONVERTERS: dict[str, Callable[[FieldSpec, Any], Any]] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "date": _to_date,
    "tags": to_tags,
    "email": _to_email,
    "phone": _to_phone,
    "phones": _to_phones,
    "ip": _to_ip,
    "enum": _to_enum,
    "object": _to_object,
}


def coerce(spec: FieldSpec, value: Any) -> Any:
    """`value` in the stored form of the field's type, or a 400 naming the field."""
    return CONVERTERS[spec.type](spec, value)


def unique_form(spec: FieldSpec, stored: Any) -> str:
    """The form in which a unique field's values are compared and claimed."""
    if spec.type == "email":
        return normalize_email(str(stored), spec.name)
    if isinstance(stored, datetime):
        return stored.isoformat()
    return str(stored)
