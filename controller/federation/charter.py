"""The federation charter: who the member coops are, their keys, the rule, the sunset clause.

A TOML file, the same on every coop except ``[self]``::

    [federation]
    name = "valley"
    rule = "prorata"          # or "equal"
    interval_s = 900
    deadline_s = 2700         # settle without a silent coop this long after the interval ends
    quorum = 2                # identical hashes that commit after the deadline (default: majority)

    [[federation.amendments]] # a change that takes effect from an interval written in it
    from = 1800000900
    rule = "equal"
    caps = { coop-a = 5000 }

    [self]
    id = "coop-a"
    private_key = "coop-a.key"   # PEM, relative to this file
    broker = "127.0.0.1:1883"

    [[members]]
    id = "coop-a"
    public_key = "base64 of the 32-byte Ed25519 key"
    expires = 2027-01-01T00:00:00Z
    broker = "coop-a.example.org:1883"   # where peers bridge to
    connection_kw = 40                   # the coop's grid connection: caps its offers
    cap_wh = 8000                        # optional lower cap per interval

Membership lapses at ``expires`` unless the coop renews it (a new charter
with a later date): offers for intervals starting at or after that time are
not counted. Renewing it changes nothing for earlier intervals: a result hash
covers only the terms of its own interval (:meth:`Charter.terms`), never the
whole file, so coops that renew at different times still agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
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
    connection_kw: float = Field(gt=0, le=1_000_000,
                                 description="grid connection power: offers are capped at this"
                                             " power over one interval")
    cap_wh: int | None = Field(default=None, ge=0, description="a lower cap per interval, Wh")

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


class Amendment(_Strict):
    """A change of the charter's terms from one interval on (``from`` is its start, Unix s)."""

    from_: int = Field(alias="from", ge=0, description="first interval the change applies to")
    rule: Literal["prorata", "equal"] | None = None
    quorum: int | None = Field(default=None, ge=1)
    deadline_s: int | None = Field(default=None, ge=1, le=7 * 86400)
    caps: dict[str, int] = Field(default_factory=dict,
                                 description="coop id → cap in Wh per interval from then on")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FederationRules(_Strict):
    """What every coop must agree on."""

    name: str = Field(min_length=1)
    rule: Literal["prorata", "equal"] = Field(
        description="how the short side's energy is split between coops")
    interval_s: int = Field(default=900, ge=60, le=86400,
                            description="settlement interval in seconds")
    retain_intervals: int = Field(default=96, ge=1, le=10000,
                                  description="recent intervals whose offers stay retained")
    deadline_s: int | None = Field(
        default=None, ge=1, le=7 * 86400,
        description="after the interval's end, settle without coops still silent "
                    "(default 3 intervals)")
    quorum: int | None = Field(default=None, ge=1, description="identical result hashes that "
                               "commit an interval after the deadline (default and least: a "
                               "majority of the active coops)")
    amendments: tuple[Amendment, ...] = Field(default=(), description="changes by interval")
    liberated: bool = Field(default=True, description="energy received from another coop "
                            "counts as liberated (it came from community generation)")


class SelfConfig(_Strict):
    """This coop's own part: its id, its private key and its broker."""

    id: str = Field(pattern=COOP_ID_PATTERN)
    private_key: Path
    broker: str = Field(default="127.0.0.1:1883", pattern=r"^[^:]+:\d{1,5}$")
    state: Path | None = Field(default=None, description="file of this coop's own offers and "
                               "commits (default: federation-<id>.sqlite beside the ledger)")
    username: str | None = Field(default=None, pattern=COOP_ID_PATTERN,
                                 description="broker user (default: none, an open broker)")
    password_file: Path | None = Field(default=None, description="file holding its password")
    tls_ca: Path | None = Field(default=None, description="CA file: connect with TLS")

    def credentials(self) -> tuple[str, str] | None:
        """``(username, password)`` for the broker, or ``None``."""
        if self.username is None:
            return None
        if self.password_file is None:
            return self.username, ""
        return self.username, read_text(self.password_file, CharterError).strip()

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
        step = self.federation.interval_s
        for k, a in enumerate(self.federation.amendments):
            if a.from_ % step:
                raise ValueError(f"federation.amendments[{k}].from = {a.from_}: not on a "
                                 f"{step} s interval boundary")
            strangers = sorted(set(a.caps) - set(ids))
            if strangers:
                raise ValueError(f"federation.amendments[{k}].caps: {strangers[0]!r} is not "
                                 "a member")
        return self

    def terms(self, interval: int) -> Terms:
        """The terms in force for the interval starting at ``interval``."""
        step = self.federation.interval_s
        rule, quorum = self.federation.rule, self.federation.quorum
        deadline = self.federation.deadline_s
        # kW × s / 3.6 = Wh; never above what the connection can carry in one interval.
        base = {m.id: math.floor(m.connection_kw * step / 3.6) for m in self.members}
        caps = {m.id: min(base[m.id], m.cap_wh if m.cap_wh is not None else base[m.id])
                for m in self.members}
        for a in sorted(self.federation.amendments, key=lambda a: a.from_):
            if a.from_ > interval:
                break
            rule = a.rule or rule
            quorum = a.quorum or quorum
            deadline = a.deadline_s or deadline
            caps |= {c: min(v, base[c]) for c, v in a.caps.items()}
        active = self.active(interval)
        # Never below a majority: two different hashes could otherwise both be committed.
        majority = len(active) // 2 + 1
        return Terms(rule, active, {c: caps[c] for c in active},
                     max(quorum or majority, majority), deadline or 3 * step)

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


@dataclass(frozen=True, slots=True)
class Terms:
    """What one interval is settled by: the rule, the active coops and their caps in Wh."""

    rule: str
    active: tuple[str, ...]
    caps: dict[str, int]
    quorum: int
    deadline_s: int

    def digest(self) -> str:
        """Hash of what decides the allocation (not quorum or deadline: they decide when)."""
        text = json.dumps({"rule": self.rule, "caps": sorted(self.caps.items())},
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class CharterError(Exception):
    """A charter that cannot be used; the message names every problem."""


def parse_charter(text: str, source: str = "<charter>", base: Path | None = None) -> Charter:
    """Parse and validate TOML text; a relative key path is resolved against ``base``."""
    charter = parse_toml(text, source, Charter, CharterError)
    if base is not None:  # relative paths in [self] are relative to the charter file
        own = charter.self_
        paths = {name: base / value for name in ("private_key", "state", "password_file",
                                                 "tls_ca")
                 if (value := getattr(own, name)) is not None and not value.is_absolute()}
        charter = charter.model_copy(update={"self_": own.model_copy(update=paths)})
    return charter


def load_charter(path: str | Path) -> Charter:
    """Read, parse and validate a charter file."""
    path = Path(path)
    text = read_text(path, CharterError)
    return parse_charter(text, str(path), path.parent)
