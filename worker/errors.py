"""One exception tree: each class knows the result code it becomes (SPEC §3).

Refusals (4xx) are answered and acked. Transient failures are retried and never answered
with 4xx. Driver exceptions are translated into these at the store and broker edges.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of everything the worker raises on purpose."""

    code: int = 500

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Refusal(WorkerError):
    """The command cannot be applied as sent; it gets a 4xx result and is acked."""

    code = 400


class InvalidCommand(Refusal):
    """Malformed command: the text names the offending field."""

    code = 400


class TokenRequired(Refusal):
    code = 401


class LimitReached(Refusal):
    code = 402


class Forbidden(Refusal):
    code = 403


class NotFound(Refusal):
    code = 404


class Ambiguous(Refusal):
    """More than one profile matched, or the relation already exists."""

    code = 409


class UniqueViolation(Refusal):
    """The write would give a unique value that belongs to another profile."""

    code = 435


class TransientError(WorkerError):
    """Worth retrying later; never answered with a 4xx."""


class StoreUnavailable(TransientError):
    """The database cannot be reached: consumption pauses until it can."""


class BrokerUnavailable(TransientError):
    """The broker connection or channel is gone: reconnect and let redelivery work."""


class PartitionLost(TransientError):
    """A later owner of this process's partition has written: the batch in hand is abandoned
    (its deliveries are the next owner's now) and the session starts again."""


class WriteConflict(TransientError):
    """A concurrent writer changed the profile between planning and writing: plan again."""


class ConfigurationError(WorkerError):
    """A setting is wrong (URL, credentials, virtual host, permissions, port): retrying cannot
    help, so the worker stops with this text instead of reconnecting forever."""
