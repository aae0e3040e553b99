"""The federation charter: who the member coops are, their keys, the rule, the sunset clause.

A TOML file, the same on every coop except ``[self]``::

    [federation]
    name = "valley"
    rule = "prorata"          # or "equal"
    interval_s = 900

    [self]
    id = "coop-a"
    private_key = "coop-a.key"   # PEM, relative to this file
    broker = "127.0.0.1:1883"

    [[members]]
    id = "coop-a"
    public_key = "base64 of the 32-byte Ed25519 key"
    expires = 2027-01-01T00:00:00Z
    broker = "coop-a.example.org:1883"   # where peers bridge to

Membership lapses at ``expires`` unless the coop renews it (a new charter
with a later date): offers for intervals starting at or after that time are
not counted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.validation import parse_toml, read_text

COOP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberCoop(_Strict):
    """One member coop of the federation."""

    id: str = Field(pattern=COOP_ID_PATTERN,
                    description="coop id, also its MQTT topic prefix federation/<id>/")
    public_key: str = Field(description="base64 of the coop's raw 32-byte Ed25519 public key")
    expires: datetime = Field(description="membership lapses at this time unless renewed")
    broker: str | None = Field(default=None, pattern=r"^[^:]+:\d{1,5}$",
                               description="HOST:PORT of the coop's broker, for bridging")

    @field_validator("public_key")
    @classmethod
    def _is_ed25519(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected base64 of a 32-byte Ed25519 public key") from None
        if len(raw) != 32:
            raise ValueError(f"expected 32 bytes of Ed25519 public key, got {len(raw)}")
        return value

    @field_validator("expires")
    @classmethod
    def _has_zone(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expected a time with its zone, e.g. 2027-01-01T00:00:00Z")
        return value

    @property
    def expires_ts(self) -> float:
        """``expires`` as a Unix time."""
        return self.expires.timestamp()


class FederationRules(_Strict):
    """What every coop must agree on."""

    name: str = Field(min_length=1)
    rule: Literal["prorata", "equal"] = Field(
        description="how the short side's energy is split between coops")
    interval_s: int = Field(default=900, ge=60, le=86400,
                            description="settlement interval in seconds")
    retain_intervals: int = Field(default=96, ge=1, le=10000,
                                  description="recent intervals whose offers stay retained")


class SelfConfig(_Strict):
    """This coop's own part: its id, its private key and its broker."""

    id: str = Field(pattern=COOP_ID_PATTERN)
    private_key: Path
    broker: str = Field(default="127.0.0.1:1883", pattern=r"^[^:]+:\d{1,5}$")

    @property
    def host_port(self) -> tuple[str, int]:
        """The broker as ``(host, port)``."""
        host, _, port = self.broker.rpartition(":")
        return host, int(port)


class Charter(_Strict):
    """The whole charter file."""

    federation: FederationRules
    self_: SelfConfig = Field(alias="self")
    members: tuple[MemberCoop, ...] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> Charter:
        ids = [m.id for m in self.members]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"members: coop id {dupes[0]!r} is listed twice")
        if self.self_.id not in ids:
            raise ValueError(f"self.id {self.self_.id!r} is not among members")
        return self

    def member(self, coop: str) -> MemberCoop | None:
        """The member coop ``coop``, or ``None``."""
        return next((m for m in self.members if m.id == coop), None)

    def active(self, interval_start: float) -> tuple[str, ...]:
        """Ids of the coops whose membership covers the interval, sorted."""
        return tuple(sorted(m.id for m in self.members if interval_start < m.expires_ts))

    def digest(self) -> str:
        """Hash of what must be identical on every coop (not ``[self]``)."""
        shared = {"federation": self.federation.model_dump(mode="json"),
                  "members": sorted((m.model_dump(mode="json") for m in self.members),
                                    key=lambda m: m["id"])}
        text = json.dumps(shared, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class CharterError(Exception):
    """A charter that cannot be used; the message names every problem."""


def parse_charter(text: str, source: str = "<charter>", base: Path | None = None) -> Charter:
    """Parse and validate TOML text; a relative key path is resolved against ``base``."""
    charter = parse_toml(text, source, Charter, CharterError)
    key = charter.self_.private_key
    if base is not None and not key.is_absolute():
        charter = charter.model_copy(
            update={"self_": charter.self_.model_copy(update={"private_key": base / key})})
    return charter


def load_charter(path: str | Path) -> Charter:
    """Read, parse and validate a charter file."""
    path = Path(path)
    text = read_text(path, CharterError)
    return parse_charter(text, str(path), path.parent)
