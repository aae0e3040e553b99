"""The TOML configuration file, validated with pydantic.

Every error names the file, the key path, the bad value and what was expected,
for example::

    coop.toml: members[1].devices[0].port = 70000: expected an integer from 1 to 65535
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from controller.config_network import (
    ApiConfig,
    FilePath,
    HostName,
    MqttConfig,
    Strict,
    is_loopback,
)
from controller.config_paths import resolve_paths
from controller.config_tariff import TariffConfig, TariffPeriod
from controller.island.site_config import IslandConfig, SiteConfig
from controller.planning.forecast_config import NEEDS_ARRAYS, ForecastConfig
from devices.mqtt.formats import FORMATS, json_path_format
from devices.templates.schema import shipped_templates
from devices.validation import parse_toml, read_text

MemberId = str
#: Ids that name the coop itself in published data.
RESERVED_IDS = frozenset({"coop", "_coop"})
__all__ = ["ApiConfig", "ConfigError", "CoopConfig", "DeviceConfig", "MemberConfig",
           "MqttConfig", "TariffConfig", "TariffPeriod", "is_loopback", "load_config",
           "parse_config"]


class DeviceConfig(Strict):
    """One physical device wired to the controller.

    Modbus devices name a ``family``: ``sunspec`` (discovered) or a shipped
    template id (``commonwatt devices --templates`` lists them). MQTT devices
    name a format (``shelly-pro3em``, ``shelly-plug``, ``tasmota``,
    ``opendtu``, ``zigbee2mqtt``, ``commonwatt-agent`` for a household's edge
    agent, or ``json`` with ``paths``) and a ``topic``.
    """

    kind: Literal["meter", "pv", "battery", "load"] = Field(
        description="what the device is to the coop: grid meter, PV inverter, battery, or a"
        " switchable load (smart plug)"
    )
    protocol: Literal["modbus", "mqtt"] = "modbus"
    family: str = Field("sunspec", description="sunspec, a template id, or an MQTT format")
    host: HostName | None = Field(
        None, description="IP address or host name of the Modbus TCP server")
    port: int | None = Field(None, ge=1, le=65535, description="default: the family's port")
    unit: int | None = Field(None, ge=0, le=255, description="Modbus unit id (device id)")
    params: dict[str, float] = Field(default_factory=dict, description="template params")
    topic: str | None = Field(None, min_length=1, description="MQTT base topic of the device")
    paths: dict[str, str] = Field(default_factory=dict, description="json: value → JSON path")
    scales: dict[str, float] = Field(default_factory=dict, description="json: value → factor")
    fresh_s: float = Field(10.0, gt=0, le=3600, description="MQTT values older than this are stale")
    reserve_pct: float = Field(
        10.0, ge=0, le=100, description="battery: emergency reserve kept for islanding; on-grid"
        " the controller never discharges below it")
    reserve_hysteresis_pct: float = Field(
        5.0, ge=0, le=50, description="battery: once at its reserve it holds until charged this"
        " far above it again")
    floor_pct: float | None = Field(
        None, ge=0, le=100, description="battery: hard SoC floor, never crossed, islanded or"
        " not; default the lower of 5 % and reserve_pct")
    offered: bool = Field(
        False, description="battery: the owner offers it to the coop (charged from neighbours'"
        " surplus, serves neighbours down to its reserve)")
    grid_charging: bool = Field(
        False, description="battery: may charge from the grid, on-grid, to restore its reserve")
    grid_forming: bool = Field(
        False, description="battery: its inverter forms the grid when the coop is islanded, and"
        " reports whether the utility is connected (SunSpec 701 ConnSt)")
    efficiency: float = Field(0.92, gt=0, le=1, description="battery round-trip efficiency")
    max_power_w: float | None = Field(
        None, gt=0, description="battery power limit, W; the lower of this and the device rating"
    )
    tier: Literal["critical", "essential", "flexible"] | None = Field(
        None, description="load: priority of what the plug feeds (default flexible); islanded,"
        " flexible plugs are switched off first, critical ones only when that tier is shed")
    rated_w: float | None = Field(
        None, gt=0, description="load: power assumed while the plug reports none, W")
    min_on_s: float = Field(
        0.0, ge=0, le=86400, description="load: Commonwatt never switches it off sooner after on")
    min_off_s: float = Field(
        0.0, ge=0, le=86400, description="load: Commonwatt never switches it on sooner after off")
    contactor: bool = Field(
        False, description="load: the household contactor, cutting the whole member; switched"
        " off last, only when every plug of the member is off and the member's tier is shed")
    infrastructure: bool = Field(
        False, description="load: feeds the coop's infrastructure (controller, router): never"
        " shed, and the member's contactor is never opened while it feeds one")
    medical: bool = Field(
        False, description="load: a member's medical device (private to the member and the"
        " coordinators): never shed, served first within the critical tier")
    # The wear price (docs/tariff.md): price / (capacity_kwh x dod x rated_cycles) per kWh.
    price: float | None = Field(
        None, gt=0, description="battery: what it cost, in the tariff's currency; with it the"
        " plan prices its throughput and the coop pays the owner for neighbours' use")
    capacity_kwh: float | None = Field(
        None, gt=0, description="battery: nameplate capacity, kWh (for the wear price)")
    rated_cycles: float = Field(
        6000, gt=0, description="battery: full cycles the maker rates it for (wear price)")
    dod: float = Field(
        0.9, gt=0, le=1, description="battery: depth of discharge of a rated cycle (wear price)")

    @property
    def wear_per_kwh(self) -> float | None:
        """What a kWh out of this battery wears it, in money: price ÷ (capacity × depth of
        discharge × rated cycles); None without a price (no wear)."""
        if self.kind != "battery" or self.price is None or self.capacity_kwh is None:
            return None
        return self.price / (self.capacity_kwh * self.dod * self.rated_cycles)
    ev_charger: bool = Field(
        False, description="load: an EV charger; on an unplanned grid loss the flexible plugs"
        " go off in the cycle that sees it, EV chargers first")

    @property
    def rating_w(self) -> float | None:
        """The device's own power rating, W, if configured: a PV template's
        ``params.rated_w`` or a battery's ``max_power_w`` (a plug's ``rated_w`` is only
        an assumption, not a rating)."""
        if self.kind == "battery":
            return self.max_power_w
        if self.kind == "pv":
            return self.params.get("rated_w")
        return None

    @model_validator(mode="after")
    def _load_fields(self) -> DeviceConfig:
        used = [k for k in ("tier", "rated_w", "contactor", "infrastructure", "medical",
                            "ev_charger")
                if getattr(self, k) not in (None, False)]
        if self.kind != "load" and used:
            raise ValueError(f"{', '.join(used)}: only for a switchable load (kind = 'load')")
        if self.price is not None and self.kind != "battery":
            raise ValueError("price: only for a battery (kind = 'battery')")
        if self.price is not None and self.capacity_kwh is None:
            raise ValueError("price: the wear price needs the battery's capacity_kwh too")
        return self

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("protocol", "modbus") != "modbus":
            return data
        family, kind = data.get("family", "sunspec"), data.get("kind")
        templates = shipped_templates()
        data = dict(data)
        if family in templates:
            t = templates[family]
            data.setdefault("port", t.default_port)
            if kind in t.kinds:
                data.setdefault("unit", t.unit_for(kind))
        else:
            data.setdefault("port", 502)
            data.setdefault("unit", 1)
        return data

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.protocol == "modbus":
            return self._check_modbus()
        if self.topic is None:
            raise ValueError("an MQTT device needs 'topic' (its base topic)")
        if self.family == "json":
            if "power_w" not in self.paths:
                raise ValueError("family 'json' needs paths with at least power_w")
            return self
        if self.family not in FORMATS:
            raise ValueError(f"unknown MQTT family {self.family!r}; known: "
                             f"{', '.join([*FORMATS, 'json'])}")
        if self.kind not in FORMATS[self.family].kinds:
            raise ValueError(f"a {self.family} device cannot be a {self.kind}; it can be "
                             f"{', '.join(FORMATS[self.family].kinds)}")
        return self

    @model_validator(mode="after")
    def _floor_below_reserve(self) -> DeviceConfig:
        if self.floor_pct is not None and self.floor_pct > self.reserve_pct:
            raise ValueError(f"floor_pct = {self.floor_pct:g} is above reserve_pct = "
                             f"{self.reserve_pct:g}; the floor must be at or below the reserve")
        return self

    @property
    def soc_floor_pct(self) -> float:
        """The hard floor in use."""
        return self.floor_pct if self.floor_pct is not None else min(5.0, self.reserve_pct)

    def _check_modbus(self) -> DeviceConfig:
        if not self.host:
            raise ValueError("a Modbus device needs 'host'")
        if self.kind == "load":
            raise ValueError("switchable loads are MQTT devices (protocol = 'mqtt')")
        templates = shipped_templates()
        if self.family == "sunspec":
            return self
        if self.family not in templates:
            raise ValueError(f"unknown family {self.family!r}; known: sunspec, "
                             f"{', '.join(sorted(templates))}")
        t = templates[self.family]
        if self.kind not in t.kinds:
            raise ValueError(f"family {self.family!r} has no {self.kind}; it has {t.kinds}")
        return self

    @property
    def endpoint(self) -> str:
        """Where the device is, for messages: ``host:port unit N (family)`` or the topic."""
        if self.protocol == "mqtt":
            return f"mqtt {self.topic} ({self.family})"
        return f"{self.host}:{self.port} unit {self.unit} ({self.family})"


class MemberConfig(Strict):
    """A coop member (a household) and its devices."""

    id: MemberId = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=80)
    key: float = Field(1.0, ge=0, description="static sharing key (policy 'static')")
    tier: Literal["critical", "essential", "flexible"] = Field(
        "essential", description="load priority of the household's unswitchable load:"
        " critical is served first and shed last")
    devices: list[DeviceConfig] = Field(min_length=1)
    public: bool = Field(
        False, description="the household publishes its own figures under its id and name;"
        " otherwise the public sees them only under a stable pseudonym")
    max_import_w: float = Field(
        43_500.0, gt=0, le=10_000_000, description="the main fuse, W (default 3 × 63 A ×"
        " 230 V): a reading beyond it (or beyond a device's own rating) is refused as bad")

    @model_validator(mode="after")
    def _not_reserved(self) -> MemberConfig:
        if self.id.lower() in RESERVED_IDS:
            raise ValueError(f"member id {self.id!r} is reserved (it names the coop as a whole in"
                             " MQTT, Home Assistant and the time series); choose another")
        return self

    @model_validator(mode="after")
    def _one_device_per_kind(self) -> MemberConfig:
        kinds = [d.kind for d in self.devices if d.kind != "load"]
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


class ControllerConfig(Strict):
    """Timing of the control cycle."""

    cycle_s: float = Field(1.0, gt=0, le=3600, description="seconds between cycles")
    stale_after_s: float = Field(5.0, gt=0, description="a reading older than this is unknown")
    setpoint_expiry_s: int = Field(
        10, ge=1, le=3600, description="a battery reverts to idle unless refreshed within this"
    )
    request_timeout_s: float = Field(1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _expiry_spans_a_cycle(self) -> ControllerConfig:
        # A setpoint that lapses before the next cycle can renew it leaves every battery
        # idle between cycles: refused, never silently raised.
        if self.setpoint_expiry_s < self.cycle_s:
            raise ValueError(
                f"controller.setpoint_expiry_s = {self.setpoint_expiry_s}: shorter than "
                f"controller.cycle_s = {self.cycle_s:g}; a setpoint must last at least one "
                "cycle (setpoints are renewed once a cycle)")
        return self


class PolicyConfig(Strict):
    """How surplus is shared among members."""

    sharing: Literal["prorata", "equal", "static", "tiers"] = Field(
        "prorata", description="prorata: to each deficit; equal: water-filling; static: by each"
        " member's key; tiers: critical first")


class DispatchConfig(Strict):
    """The rolling plan on the grid (controller/planning/): off, greedy alone dispatches."""

    plan: bool = Field(False, description="follow a rolling plan's battery targets on-grid")
    replan_min: float = Field(15.0, gt=0, le=1440, description="minutes between plans")
    horizon_h: float = Field(24.0, ge=1, le=36, description="hours each plan looks ahead")


class GridConfig(Strict):
    """Limits at the point of common coupling (the coop's connection to the utility)."""

    import_cap_w: float | None = Field(None, gt=0, description="most the coop may draw, W")
    export_cap_w: float | None = Field(None, ge=0, description="most the coop may feed in, W")


class StorageConfig(Strict):
    """Where the ledger lives."""

    ledger: FilePath = Path("var/ledger.sqlite")


class LedgerConfig(Strict):
    """How the ledger books: per settlement interval, aligned to the UTC clock."""

    settlement_s: Literal[60, 300, 900, 1800, 3600] = Field(
        900, description="settlement interval, s; divides an hour (15 min as in FR/AT/BE)")
    drift_threshold_pct: float = Field(
        3.0, ge=0, le=100,
        description="flag a member whose booked grid energy and meter counters differ by more")
    drift_min_wh: int = Field(100, ge=0, description="smaller drifts are never flagged")


class GovernanceConfig(Strict):
    """Mandates: how long access tokens live and how often one person may coordinate."""

    token_max_days: float = Field(
        90, gt=0, le=3650, description="the longest any token may live, days (also the default)")
    coordinator_max_days: float = Field(
        30, gt=0, le=3650, description="the longest a coordinator token may live, days")
    max_consecutive_terms: int = Field(
        2, ge=1, le=100, description="coordinator mandates one label may hold in a row")


class TimeSeriesConfig(Strict):
    """An InfluxDB v2 write API (InfluxDB 2, or VictoriaMetrics) for per-cycle time series."""

    url: str = Field("http://127.0.0.1:8428", pattern=r"^https?://")
    bucket: str = Field("commonwatt", min_length=1)
    org: str = "commonwatt"
    token: str = ""
    #: Where unsent points wait while the server is down; ``None``: the caller
    #: picks a directory beside the ledger.
    spool_dir: FilePath | None = None
    #: The spool's bound; past it the oldest points are dropped (and counted).
    max_spool_mb: float = Field(64, gt=0)


class BackupConfig(Strict):
    """Daily checked backups taken by the running controller (``commonwatt backup``)."""

    destination: FilePath = Field(description="directory of the backups (one per run)")
    daily_at: str = Field("03:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                          description="time of day, HH:MM, UTC")
    keep: int = Field(7, ge=1, le=3650, description="backups kept; older ones are deleted")


class FederationLink(Strict):
    """Membership of a federation of coops (see ``commonwatt federation``)."""

    charter: FilePath = Field(description="the federation charter (TOML): members, keys, rule")


class CoopConfig(Strict):
    """The whole configuration file."""

    name: str = "Commonwatt coop"
    controller: ControllerConfig = ControllerConfig()
    policy: PolicyConfig = PolicyConfig()
    dispatch: DispatchConfig = DispatchConfig()
    forecast: ForecastConfig = ForecastConfig()
    grid: GridConfig = GridConfig()
    storage: StorageConfig = StorageConfig()
    ledger: LedgerConfig = LedgerConfig()
    tariff: TariffConfig | None = None
    api: ApiConfig = ApiConfig()
    governance: GovernanceConfig = GovernanceConfig()
    mqtt: MqttConfig | None = None
    timeseries: TimeSeriesConfig | None = None
    site: SiteConfig | None = None
    island: IslandConfig = IslandConfig()
    federation: FederationLink | None = None
    backup: BackupConfig | None = None
    members: list[MemberConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CoopConfig:
        problems = []
        first: dict[str, int] = {}
        for i, m in enumerate(self.members):
            if m.id in first:
                problems.append(f"members[{i}].id = {m.id!r}: repeated; members[{first[m.id]}]"
                                ".id has it already (member ids must be unique)")
            first.setdefault(m.id, i)
        seen: dict[tuple[object, ...], str] = {}
        for i, m in enumerate(self.members):
            for j, d in enumerate(m.devices):
                path = f"members[{i}].devices[{j}]"
                if d.protocol == "mqtt":
                    if self.mqtt is None:
                        problems.append(f"{path}: {m.id}/{d.kind} is an MQTT device: add an"
                                        " [mqtt] section naming the broker")
                        continue
                    # Any formats: two devices on one topic would read each other's values.
                    keys: list[tuple[object, ...]] = [("mqtt", t) for t in _topics(d)]
                else:
                    # One hybrid inverter is pv, meter and battery on the same unit id.
                    keys = [(d.host, d.port, d.unit, d.kind if d.family != "sunspec" else "")]
                for key in keys:
                    if key in seen:
                        what = f"topic {key[1]!r}" if d.protocol == "mqtt" else d.endpoint
                        problems.append(f"{path}: {what} is configured twice ({seen[key]} and"
                                        f" {path}); each device may be configured once")
                        break
                for key in keys:
                    seen.setdefault(key, path)
        if problems:
            raise ValueError("\n".join(problems))
        ids = list(first)
        known = set(ids)
        named = [(f"site.arrays[{i}]", a.member) for i, a in
                 enumerate(self.site.arrays if self.site else [])]
        named += [(f"island.members[{i}]", m.member) for i, m in enumerate(self.island.members)]
        named += [(f"island.batteries[{i}]", b.member)
                  for i, b in enumerate(self.island.batteries)]
        for key, member in named:
            if member not in known:
                raise ValueError(f"{key}.member = {member!r}: not a member of the coop")
        if self.forecast.provider in NEEDS_ARRAYS and not (self.site and self.site.arrays):
            raise ValueError(f"forecast.provider = {self.forecast.provider!r}: needs [site] "
                             "with at least one [[site.arrays]] (or provider = \"history\")")
        return self

    @property
    def plan_path(self) -> Path:
        """The island plan the controller follows: ``[island] plan_file``, or ``plan.json``
        beside the ledger."""
        if self.island.plan_file is not None:
            return Path(self.island.plan_file)
        return self.storage.ledger.parent / "plan.json"


def _topics(device: DeviceConfig) -> list[str]:
    """Every topic an MQTT device is read from."""
    fmt = (json_path_format(device.paths, device.scales) if device.family == "json"
           else FORMATS[device.family])
    return list(fmt.topics(str(device.topic)))


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names every problem."""


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> CoopConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` naming every problem.

    With ``base``, relative file paths in it are made absolute against that directory
    (:func:`~controller.config_paths.resolve_paths`)."""
    config = parse_toml(text, source, CoopConfig, ConfigError)
    return config if base is None else resolve_paths(config, base)


def load_config(path: str | Path) -> CoopConfig:
    """Read, parse and validate a configuration file; its relative paths (ledger, plan,
    spool, MQTT password and TLS files, charter) are relative to the file's directory."""
    path = Path(path)
    text = read_text(path, ConfigError)
    return parse_config(text, str(path), path.parent)
