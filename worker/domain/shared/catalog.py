"""The account catalog: accounts, databases and their field schemas, resources, relation types,
tokens and broker-user bindings. Loaded by `profile-worker catalog apply`."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.errors import InvalidCommand

FieldType = Literal[
    "string",
    "int",
    "float",
    "bool",
    "date",
    "tags",
    "email",
    "phone",
    "phones",
    "ip",
    "enum",
    "object",
]
Scope = Literal["read", "write"]
Channel = Literal["email", "sms", "push"]

FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class CatalogModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(CatalogModel):
    """One declared profile field. Names never contain `.` or start with `$`."""

    name: str = Field(pattern=FIELD_NAME_PATTERN)
    type: FieldType
    unique: bool = False
    values: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _enum_needs_values(self) -> FieldSpec:
        if self.type == "enum" and not self.values:
            raise ValueError(f"enum field '{self.name}' needs 'values'")
        return self


SYSTEM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(name="email", type="email", unique=True),
    FieldSpec(name="phones", type="phones"),
    FieldSpec(name="_fname", type="string"),
    FieldSpec(name="_lname", type="string"),
    FieldSpec(name="_bdate", type="date"),
    FieldSpec(name="_sex", type="string"),
    FieldSpec(name="_regdate", type="date"),
    FieldSpec(name="_regip", type="ip"),
    FieldSpec(name="_regurl", type="string"),
)


class Account(CatalogModel):
    account_id: int
    name: str
    max_profiles: int | None = Field(None, ge=0)
    max_message_bytes: int | None = Field(None, ge=1_024)

    def check_message_size(self, body: bytes) -> None:
        """400 for a message over the account's own size limit (SPEC §8)."""
        if self.max_message_bytes and len(body) > self.max_message_bytes:
            raise InvalidCommand(
                f"message is {len(body)} bytes, over the account's limit of "
                f"{self.max_message_bytes}"
            )


class Database(CatalogModel):
    """A collection of profiles with a declared schema; system fields are always there."""

    db_id: int
    account_id: int
    name: str
    fields: tuple[FieldSpec, ...] = ()

    @model_validator(mode="after")
    def _no_clash_with_system_fields(self) -> Database:
        system = {spec.name for spec in SYSTEM_FIELDS}
        clash = [spec.name for spec in self.fields if spec.name in system]
        if clash:
            raise ValueError(f"database {self.db_id} redeclares system fields {clash}")
        return self

    @cached_property
    def field_specs(self) -> dict[str, FieldSpec]:
        """Every field of the database by name, system fields first (built once)."""
        return {spec.name: spec for spec in (*SYSTEM_FIELDS, *self.fields)}


class Resource(CatalogModel):
    resource_id: int
    account_id: int
    name: str
    channels: tuple[Channel, ...] = ("email",)


class RelationProperty(CatalogModel):
    name: str = Field(pattern=FIELD_NAME_PATTERN)
    type: Literal["number", "bool"]


class RelationType(CatalogModel):
    rel_id: int
    account_id: int
    name: str
    db_a: int
    db_b: int
    properties: tuple[RelationProperty, ...] = ()


class Token(CatalogModel):
    """A credential, stored by the SHA-256 of its secret only."""

    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    account_id: int
    name: str
    db_ids: tuple[int, ...] | None = None
    scopes: tuple[Scope, ...] = ("read", "write")


class BrokerUser(CatalogModel):
    """A RabbitMQ user whose validated `user_id` stands in for a token of its account."""

    user: str
    account_id: int


class TokenEntry(CatalogModel):
    """A token as written in a catalog file: the secret, or its SHA-256."""

    name: str
    account_id: int
    token: str | None = Field(None, min_length=16)
    token_sha256: str | None = None
    db_ids: tuple[int, ...] | None = None
    scopes: tuple[Scope, ...] = ("read", "write")

    def stored(self) -> Token:
        digest = self.token_sha256 or (hash_token(self.token) if self.token else None)
        if digest is None:
            raise ValueError(f"token '{self.name}' needs 'token' or 'token_sha256'")
        return Token(
            token_sha256=digest,
            account_id=self.account_id,
            name=self.name,
            db_ids=self.db_ids,
            scopes=self.scopes,
        )


class CatalogFile(CatalogModel):
    """What `catalog apply` reads from YAML or JSON."""

    accounts: tuple[Account, ...] = ()
    databases: tuple[Database, ...] = ()
    resources: tuple[Resource, ...] = ()
    relation_types: tuple[RelationType, ...] = ()
    tokens: tuple[TokenEntry, ...] = ()
    broker_users: tuple[BrokerUser, ...] = ()


def hash_token(secret: str) -> str:
    """How tokens are stored and looked up: SHA-256 hex of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
