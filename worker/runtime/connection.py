"""Opening a broker connection, with the refusals that retrying cannot mend told apart.

aiormq reports a wrong password, an unknown virtual host and a user without access to it in
three different shapes; the worker, the CLI and the producers' client all need the same two
answers: a `ConfigurationError` to stop on, or a `BrokerUnavailable` to retry.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection

from worker.errors import BrokerUnavailable, ConfigurationError


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A connection to the broker at `url`, named `name` in the management UI."""
    try:
        connection = await aio_pika.connect(url, client_properties={"connection_name": name})
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        raise ConfigurationError(
            f"the broker at {_address(url)} refused the login of user '{_user(url)}': "
            "wrong user name or password"
        ) from exc
    except aiormq.exceptions.InvalidFrameError as exc:
        if "Connection.Close" not in str(exc):
            raise BrokerUnavailable(f"broker at {_address(url)}: {exc}") from exc
        raise ConfigurationError(
            f"the broker at {_address(url)} refused virtual host '{_vhost(url)}' to user "
            f"'{_user(url)}': it does not exist or the user has no permission on it"
        ) from exc
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable at {_address(url)}: {_reason(exc)}") from exc
    except StopAsyncIteration as exc:  # aiormq's reader, when a connection is cut mid-handshake
        raise BrokerUnavailable(f"broker at {_address(url)} closed the connection") from exc
    return connection  # type: ignore[return-value]


def refused_access(exc: BaseException, url: str) -> ConfigurationError | None:
    """The configuration error behind a channel closed for lack of permission, if it was."""
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return ConfigurationError(
            f"the broker refused user '{_user(url)}' access: {_reason(exc)}; "
            "grant it configure, write and read permissions on the worker's queues and exchanges"
        )
    return None


def _reason(exc: BaseException) -> str:
    args = [str(arg) for arg in exc.args if not isinstance(arg, int)]
    return "; ".join(args) or type(exc).__name__


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


def _user(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def _vhost(url: str) -> str:
    return unquote(urlsplit(url).path[1:]) or "/"
