"""Message properties that are not UTF-8 must not take the connection down.

AMQP short strings (content type, encoding, ids, header keys) are bytes on the wire; pamqp
decodes them strictly, so one producer's `content_type` of `FF FE` failed the frame, closed the
connection, and the broker redelivered the same message to the next session: every queue of
the worker stalled for good. Decoded leniently (undecodable bytes become U+FFFD), the message
reaches the worker and is answered like any other malformed command.
"""

from __future__ import annotations

import struct

from pamqp import common, decode


def lenient_short_str(value: bytes) -> tuple[int, str]:
    """pamqp's `short_str`, with undecodable bytes replaced instead of raised on."""
    try:
        length = common.Struct.byte.unpack(value[0:1])[0]
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack short string value") from err
    return length + 1, value[1 : length + 1].decode("utf-8", errors="replace")


def install() -> None:
    """Make pamqp decode every short string leniently (idempotent)."""
    decode.short_str = lenient_short_str
    decode.METHODS["shortstr"] = lenient_short_str
