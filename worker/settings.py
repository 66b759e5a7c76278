"""One settings object, read once from the environment (prefix `PW_`) and passed down."""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the worker; units are part of the names."""

    model_config = SettingsConfigDict(
        env_prefix="PW_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=AliasChoices("PW_AMQP_URL", "AMQP_URL"),
    )
    """One broker address, or several separated by `,` or `;` (the nodes of one cluster, tried
    in turn on every connect: `broker_addresses`)."""
    broker_connect_timeout_seconds: float = Field(10.0, gt=0)
    """How long one address may take to accept a connection before the next is tried (a node
    cut off from the network never refuses: it only stays silent)."""
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:27017/",
        validation_alias=AliasChoices("PW_MONGODB_URL", "MONGODB_URL"),
    )
    mongodb_database: str = "profile_worker"
    mongodb_timeout_ms: int = 5_000
    mongodb_write_concern: str = Field("majority", pattern=r"^(majority|[0-9]+)$")
    """`w` of every write: "majority" (a replica set acknowledges a write once most of its
    members have it, so a failover never takes back a write the worker acted on), or a number
    of members ("1": the primary alone)."""
    mongodb_read_concern: Literal["local", "majority"] = "majority"
    """`readConcern` of every read: "majority" reads only what most members have, so the
    inbox never acts on a write that a failover could still take back."""
    connection_name: str = "profile-worker"

    import_queue: str = "database_import"
    import_result_queue: str = "database_import_result"
    relations_queue: str = "relations"
    relations_result_queue: str = "relations_result"
    relations_query_queue: str = "relations_query"
    events_exchange: str = "profile_events"
    dead_letter_exchange: str = "profile_worker.dead_letter"
    queue_type: Literal["classic", "quorum"] = "classic"

    partitions: int = Field(1, ge=1, le=1_024)
    """P, the partitions of each command queue (SPEC §9): commands are spread over them by
    order key and each is consumed by one process at a time. 1, the default, has no routing
    hop: the command queue itself is consumed by one process while the others stand by, so any
    number of processes is safe. Changing it for a running deployment is a migration (README)."""
    partition_poll_seconds: float = Field(1.0, gt=0)
    """How often a process counts the live processes and looks at every partition, to take
    over one nobody consumes or to hand one over to a process that joined."""
    prefetch_count: int = Field(512, ge=1, le=65_535)
    batch_max_size: int = Field(256, ge=1)
    batch_max_wait_ms: int = Field(20, ge=0)
    query_batch_max_wait_ms: int = Field(0, ge=0)
    """Queries are answered to a waiting caller: by default, batch only what already arrived."""
    retry_max_attempts: int = Field(5, ge=0, le=20)
    retry_base_delay_ms: int = Field(1_000, ge=1)
    retry_backoff_factor: float = Field(4.0, ge=1.0)
    reconnect_max_delay_seconds: float = Field(30.0, gt=0)
    result_ttl_seconds: int = Field(86_400, ge=1)
    result_queue_max_length: int | None = Field(None, ge=1)
    """Ready results a result queue holds at most. Set, the result queues are declared with
    `x-max-length` and `x-overflow: reject-publish`, so a slow reader of results holds the
    worker back (its publishes are refused and retried, its commands stay unacked) instead of
    losing results; unset, they are unbounded, with the arguments they always had."""
    dedup_window_seconds: int = Field(7 * 86_400, ge=1)
    dedup_cleanup_interval_seconds: float = Field(600.0, gt=0)
    catalog_cache_seconds: float = Field(30.0, ge=0)
    shutdown_grace_seconds: float = Field(30.0, gt=0)
    max_message_bytes: int = Field(1_048_576, ge=1_024)
    metrics_port: int = Field(9108, ge=0, le=65_535)
    log_level: str = "INFO"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """uvloop's C event loop and transports: the worker is bound by the AMQP client's CPU."""

    health_check_interval_seconds: float = Field(5.0, gt=0)
    """How often the database is pinged for /readyz and `profile_worker_store_up`."""

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, urls: str) -> str:
        addresses = broker_addresses(urls)
        if not addresses:
            raise ValueError("expected at least one amqp://host[:port]/... address")
        for number, address in enumerate(addresses, 1):
            where = f"address {number} of {len(addresses)}: " if len(addresses) > 1 else ""
            try:
                _with_scheme(address, ("amqp", "amqps"))
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None
        users = {unquote(urlsplit(address).username or "guest") for address in addresses}
        if len(users) > 1:
            raise ValueError(
                f"every broker address must log in as one user (its user_id is vouched for), "
                f"got {', '.join(sorted(users))}"
            )
        return urls

    @field_validator("mongodb_url")
    @classmethod
    def _mongodb_scheme(cls, url: str) -> str:
        return _with_scheme(url, ("mongodb", "mongodb+srv"))

    @property
    def broker_user(self) -> str:
        """The broker user this worker connects as; RabbitMQ vouches for it in `user_id`."""
        return unquote(urlsplit(broker_addresses(self.amqp_url)[0]).username or "guest")

    def as_environment(self) -> dict[str, str]:
        """`PW_*` variables that give another process (a spawned worker) these settings; an
        unset optional setting is left out (its default is unset too)."""
        return {
            f"PW_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    def retry_delay_ms(self, attempt: int) -> int:
        """Delay before retry number `attempt` (1-based): exponential backoff."""
        return int(self.retry_base_delay_ms * self.retry_backoff_factor ** (attempt - 1))


def _with_scheme(url: str, schemes: tuple[str, ...]) -> str:
    """`url` if it names a host under one of `schemes`; a clear refusal otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{scheme}://host" for scheme in schemes)
        raise ValueError(f"expected {wanted}[:port]/..., got '{redacted(url)}'")
    return url


def broker_addresses(urls: str) -> list[str]:
    """The addresses of `amqp_url`: one, or several separated by `,` or `;` (kombu's and
    pika's lists), in the order given."""
    return [address.strip() for address in urls.replace(";", ",").split(",") if address.strip()]


def redacted(url: str) -> str:
    """`url` (or each address of a list) with its password replaced, fit for logs and errors."""
    if url.startswith("amqp") and len(broker_addresses(url)) > 1:  # mongodb:// lists hosts
        return ",".join(redacted(address) for address in broker_addresses(url))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
