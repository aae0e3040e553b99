"""The declarative device-template schema: one TOML file per device family.

A template says, for each device kind the family can be (``pv``, ``meter``,
``battery``), where each data point lives: register address, data type,
register bank, word order and scale. Values are converted to Commonwatt's
units and sign convention (see :mod:`devices.kinds`) by the template, so a
driver never holds vendor knowledge. Battery control is a list of register
writes per action (charge, discharge, idle, release), each value either a
constant or one of :data:`WRITE_QUANTITIES`. PV curtailment (``[pv_limit]``)
is two lists of writes, ``set`` and ``release``, whose values may be one of
:data:`LIMIT_QUANTITIES`.

The schema is documented for installers in ``devices/templates/README.md``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.validation import parse_toml

RegisterType = Literal["u16", "s16", "u32", "s32", "u64", "s64", "f32", "str"]
WORDS = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "u64": 4, "s64": 4, "f32": 2}

#: Quantities a control write may carry instead of a constant.
WRITE_QUANTITIES = ("charge_w", "discharge_w", "power_w", "expiry_s", "expiry_min")
#: Quantities a PV-limit write may carry: the limit in W, or in % of
#: ``params.rated_w``, and the revert time.
LIMIT_QUANTITIES = ("limit_w", "limit_pct", "expiry_s", "expiry_min")

#: The data points each kind may declare, with their Commonwatt unit.
KIND_POINTS: dict[str, dict[str, str]] = {
    "pv": {"power_w": "W", "energy_wh": "Wh"},
    "meter": {"power_w": "W", "import_wh": "Wh", "export_wh": "Wh"},
    "battery": {
        "power_w": "W",
        "soc_pct": "%",
        "capacity_wh": "Wh",
        "max_charge_w": "W",
        "max_discharge_w": "W",
    },
}
REQUIRED_POINTS = {"pv": ("power_w",), "meter": ("power_w",), "battery": ("power_w", "soc_pct")}
CAPABILITIES = (
    "pv", "meter", "battery", "battery-control", "device-expiry", "sunspec", "hybrid",
    "pv-limit",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Register(_Strict):
    """Where one value lives and how to decode it."""

    address: int | list[int] = Field(
        description="register address (0-based, as on the wire); a list is summed (per-phase)"
    )
    type: RegisterType = "u16"
    function: Literal["holding", "input"] = Field(
        "holding", description="register bank: holding (FC 3) or input (FC 4)"
    )
    words: int | None = Field(None, ge=1, le=64, description="registers of a str value")
    scale: float = Field(1.0, description="multiplier to Commonwatt units; negative flips sign")
    sf_address: int | None = Field(
        None, ge=0, le=65535, description="SunSpec-style int16 scale-factor register (10^sf)"
    )
    word_order: Literal["big", "little"] | None = Field(
        None, description="32/64-bit word order; defaults to the template's"
    )
    unit: int | None = Field(None, ge=0, le=255, description="unit id if not the device's own")
    nan: list[int] | None = Field(
        None, description="raw values meaning 'not available'; defaults per type"
    )
    add: list[Register] = Field(
        default_factory=list, description="further registers added to this value, each scaled"
    )
    nan_zero: bool = Field(
        False, description="the 'not available' sentinel means 0: the device reports no value "
        "while it produces nothing (an SMA inverter asleep at night)",
    )

    @model_validator(mode="after")
    def _check(self) -> Register:
        addresses = self.address if isinstance(self.address, list) else [self.address]
        if not addresses or any(not 0 <= a <= 65535 for a in addresses):
            raise ValueError("address must be 0…65535 (or a non-empty list of them)")
        if self.type == "str" and self.words is None:
            raise ValueError("a str register needs 'words' (its length in registers)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def addresses(self) -> list[int]:
        """Every address this value is read from (several when summed)."""
        return self.address if isinstance(self.address, list) else [self.address]

    @property
    def size(self) -> int:
        """Registers per address."""
        return self.words if self.type == "str" else WORDS[self.type]  # type: ignore[return-value]


class Param(_Strict):
    """A value the installer sets in the coop configuration, e.g. a usable capacity."""

    param: str = Field(pattern=r"^[a-z_]+$")


Source = Register | Param


class Write(_Strict):
    """One register write of a control action."""

    address: int = Field(ge=0, le=65535)
    type: Literal["u16", "s16", "u32", "s32", "f32"] = "u16"
    value: int | float | str = Field(
        description="a constant, one of charge_w, discharge_w, power_w, expiry_s, expiry_min,"
        " or the name of a template param"
    )
    scale: float = 1.0
    sf_address: int | None = Field(
        None, ge=0, le=65535,
        description="SunSpec-style int16 scale-factor register: the value is divided by 10^sf",
    )
    word_order: Literal["big", "little"] | None = None
    unit: int | None = Field(None, ge=0, le=255)


class Control(_Strict):
    """How a battery is commanded. Each list is written in order."""

    expiry: Literal["device", "controller"] = Field(
        description="device: the device reverts on its own (a watchdog or timeout register);"
        " controller: Commonwatt must write 'release' itself"
    )
    charge: list[Write] = Field(min_length=1)
    discharge: list[Write] = Field(min_length=1)
    idle: list[Write] = Field(min_length=1)
    release: list[Write] = Field(min_length=1, description="hand control back to the vendor")


class PvLimitControl(_Strict):
    """How a PV inverter's active-power limit is written. Each list is written in order."""

    expiry: Literal["device", "controller"] = Field(
        description="device: the inverter drops the limit on its own when the revert time"
        " (expiry_s / expiry_min) runs out; controller: Commonwatt must write 'release'"
    )
    set: list[Write] = Field(min_length=1, description="writes that apply a limit")
    release: list[Write] = Field(min_length=1, description="writes that remove the limit")


class KindMap(_Strict):
    """The data points of one device kind."""

    unit: int | None = Field(None, ge=0, le=255, description="unit id for this kind")
    points: dict[str, Source]
    control: Control | None = None


class Identity(_Strict):
    """Registers that identify the device, read by ``commonwatt scan``."""

    unit: int | None = Field(None, ge=0, le=255)
    manufacturer: Register | None = None
    model: Register | None = None
    serial: Register | None = None
    model_codes: list[int] | None = Field(
        None, description="numeric model codes this family covers (a code register, e.g. "
        "Carlo Gavazzi's identification code); scan rejects a device with another code",
    )


class Template(_Strict):
    """One device family."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str
    manufacturer: str
    protocol: Literal["modbus", "sunspec"] = Field(
        description="modbus: fixed addresses below; sunspec: SunSpec discovery, addresses as"
        " documented for the family's fixed layout"
    )
    capabilities: list[str]
    default_port: int = Field(502, ge=1, le=65535)
    default_unit: int = Field(1, ge=0, le=255)
    word_order: Literal["big", "little"] = "big"
    params: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(min_length=1, description="what the installer must do on site")
    sources: list[str] = Field(min_length=1, description="the vendor documents the facts are from")
    identity: Identity = Identity()
    pv: KindMap | None = None
    meter: KindMap | None = None
    battery: KindMap | None = None
    pv_limit: PvLimitControl | None = Field(
        None, description="PV curtailment through the inverter's active-power limit"
    )

    @model_validator(mode="after")
    def _check(self) -> Template:
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
        for kind in KIND_POINTS:
            kmap = self.kind(kind)
            if kmap is None:
                continue
            extra = sorted(set(kmap.points) - set(KIND_POINTS[kind]))
            if extra:
                raise ValueError(
                    f"{kind}.points: unknown {extra}; allowed: {', '.join(KIND_POINTS[kind])}"
                )
            missing = [p for p in REQUIRED_POINTS[kind] if p not in kmap.points]
            if missing:
                raise ValueError(f"{kind}.points: missing {missing}")
            for name, source in kmap.points.items():
                if isinstance(source, Param) and source.param not in self.params:
                    raise ValueError(f"{kind}.points.{name}: no default for param {source.param!r}")
            if kmap.control is not None and kind != "battery":
                raise ValueError(f"{kind}.control: only a battery can be controlled")
            if kmap.control is not None:
                self._check_writes(kmap.control)
        if not self.kinds:
            raise ValueError("a template needs at least one of pv, meter, battery")
        if self.pv_limit is not None:
            if self.pv is None:
                raise ValueError("pv_limit: the template has no [pv] to limit")
            for action in ("set", "release"):
                self._check_values(f"pv_limit.{action}", getattr(self.pv_limit, action),
                                   LIMIT_QUANTITIES)
        return self

    def _check_writes(self, control: Control) -> None:
        for action in ("charge", "discharge", "idle", "release"):
            writes = getattr(control, action)
            self._check_values(f"battery.control.{action}", writes, WRITE_QUANTITIES)
            if any(w.sf_address is not None for w in writes):
                raise ValueError(f"battery.control.{action}: sf_address is for pv_limit writes")

    def _check_values(self, where: str, writes: list[Write], quantities: tuple[str, ...]) -> None:
        for i, write in enumerate(writes):
            value = write.value
            if isinstance(value, str) and value not in (*quantities, *self.params):
                raise ValueError(
                    f"{where}[{i}].value = {value!r}: expected a number,"
                    f" one of {', '.join(quantities)} or a param"
                )

    def kind(self, kind: str) -> KindMap | None:
        """The map of ``kind`` (``pv``, ``meter`` or ``battery``), if the family has it."""
        return {"pv": self.pv, "meter": self.meter, "battery": self.battery}[kind]

    @property
    def kinds(self) -> list[str]:
        """The device kinds this family can be."""
        return [k for k in KIND_POINTS if self.kind(k) is not None]

    def unit_for(self, kind: str, configured: int | None = None) -> int:
        """The unit id of ``kind``: the configured one, else the template's."""
        kmap = self.kind(kind)
        if configured is not None:
            return configured
        return kmap.unit if kmap is not None and kmap.unit is not None else self.default_unit


class TemplateError(Exception):
    """A template file that cannot be used; the message names the file and field."""


def parse_template(text: str, source: str) -> Template:
    """Parse and validate one template's TOML text."""
    return parse_toml(text, source, Template, TemplateError)


def load_template(path: str | Path) -> Template:
    """Read and validate a template file."""
    path = Path(path)
    return parse_template(path.read_text(encoding="utf-8"), str(path))


@cache
def shipped_templates() -> dict[str, Template]:
    """Every template shipped in ``devices/templates/families``, by id."""
    folder = resources.files("devices.templates") / "families"
    out: dict[str, Template] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            template = parse_template(entry.read_text(encoding="utf-8"), entry.name)
            out[template.id] = template
    return out


def template(template_id: str) -> Template:
    """A shipped template by id; the error lists the known ones."""
    known = shipped_templates()
    if template_id not in known:
        raise KeyError(f"no device template {template_id!r}; known: {', '.join(sorted(known))}")
    return known[template_id]
