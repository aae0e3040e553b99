"""The TOML configuration file, validated with pydantic.

Every error names the file, the key path, the bad value and what was expected,
for example::

    coop.toml: members[1].devices[0].port = 70000: expected an integer from 1 to 65535
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.validation import format_errors

MemberId = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Strict):
    """One physical device wired to the controller."""

    kind: Literal["meter", "pv", "battery"] = Field(
        description="what the device is to the coop: grid meter, PV inverter or battery"
    )
    protocol: Literal["modbus"] = "modbus"
    family: Literal["sunspec"] = Field("sunspec", description="register-map family")
    host: str = Field(description="IP address or host name of the Modbus TCP server")
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255, description="Modbus unit id (device id)")
    reserve_pct: float = Field(
        10.0, ge=0, le=100, description="battery SoC floor the controller never discharges below"
    )
    efficiency: float = Field(0.92, gt=0, le=1, description="battery round-trip efficiency")
    max_power_w: float | None = Field(
        None, gt=0, description="battery power limit, W; the lower of this and the device rating"
    )


class MemberConfig(_Strict):
    """A coop member (a household) and its devices."""

    id: MemberId = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=80)
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_device_per_kind(self) -> MemberConfig:
        kinds = [d.kind for d in self.devices]
        for kind in set(kinds):
            if kinds.count(kind) > 1:
                raise ValueError(f"member {self.id!r} has {kinds.count(kind)} {kind} devices; "
                                 "expected at most one of each kind")
        if "meter" not in kinds:
            raise ValueError(f"member {self.id!r} has no meter; every member needs one")
        return self

    def device(self, kind: str) -> DeviceConfig | None:
        """This member's device of ``kind``, if any."""
        return next((d for d in self.devices if d.kind == kind), None)


class ControllerConfig(_Strict):
    """Timing of the control cycle."""

    cycle_s: float = Field(1.0, gt=0, le=3600, description="seconds between cycles")
    stale_after_s: float = Field(5.0, gt=0, description="a reading older than this is unknown")
    setpoint_expiry_s: int = Field(
        10, ge=1, le=3600, description="a battery reverts to idle unless refreshed within this"
    )
    request_timeout_s: float = Field(1.0, gt=0, le=60)


class PolicyConfig(_Strict):
    """How surplus is shared among members."""

    sharing: Literal["prorata"] = "prorata"


class StorageConfig(_Strict):
    """Where the ledger lives."""

    ledger: Path = Path("var/ledger.sqlite")


class ApiConfig(_Strict):
    """Where the HTTP API listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class MqttConfig(_Strict):
    """The MQTT broker the controller publishes members' figures to."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("commonwatt", pattern=r"^[A-Za-z0-9_/-]+$")


class CoopConfig(_Strict):
    """The whole configuration file."""

    name: str = "Commonwatt coop"
    controller: ControllerConfig = ControllerConfig()
    policy: PolicyConfig = PolicyConfig()
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    mqtt: MqttConfig | None = None
    members: list[MemberConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CoopConfig:
        ids = [m.id for m in self.members]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"member ids must be unique; repeated: {', '.join(dupes)}")
        seen: dict[tuple[str, int, int], str] = {}
        for m in self.members:
            for d in m.devices:
                key = (d.host, d.port, d.unit)
                if key in seen:
                    raise ValueError(
                        f"{d.host}:{d.port} unit {d.unit} is configured twice "
                        f"({seen[key]} and {m.id}/{d.kind})"
                    )
                seen[key] = f"{m.id}/{d.kind}"
        return self


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names every problem."""


def parse_config(text: str, source: str = "<config>") -> CoopConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return CoopConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, data, exc, CoopConfig)) from None


def load_config(path: str | Path) -> CoopConfig:
    """Read, parse and validate a configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(path))
