"""A device driven entirely by its template: reads, identity, battery control and PV limits.

Reads are planned once per kind: every register the kind needs is grouped by
unit id and register bank, and adjacent registers are fetched in one request
(never across a gap, since many devices answer "illegal address" for holes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from devices.kinds import BatteryReading, MeterReading, PvLimit, PvReading, Setpoint
from devices.modbus.transport import MAX_READ, DeviceError, ModbusLink
from devices.templates.codec import decode_number, decode_string, encode_number
from devices.templates.schema import WORDS, Param, Register, Template, Write

Key = tuple[int, str]  # (unit, function)


@dataclass(frozen=True, slots=True)
class Batch:
    """One read request: ``count`` registers from ``address`` of a unit and bank."""

    unit: int
    function: str
    address: int
    count: int


def plan_reads(spans: dict[Key, set[tuple[int, int]]]) -> list[Batch]:
    """Merge (address, size) spans per unit and bank into the fewest gap-free reads."""
    batches: list[Batch] = []
    for (unit, function), items in sorted(spans.items()):
        registers = sorted({a + i for a, size in items for i in range(size)})
        start = prev = registers[0]
        for reg in registers[1:]:
            if reg != prev + 1 or reg - start >= MAX_READ:
                batches.append(Batch(unit, function, start, prev - start + 1))
                start = reg
            prev = reg
        batches.append(Batch(unit, function, start, prev - start + 1))
    return batches


class RegisterSnapshot:
    """Registers read in one pass, looked up by unit, bank and address."""

    def __init__(self) -> None:
        self._regs: dict[Key, dict[int, int]] = defaultdict(dict)

    def store(self, batch: Batch, values: list[int]) -> None:
        """Keep the registers one batch returned."""
        if len(values) < batch.count:
            raise DeviceError("garbage", f"asked {batch.count} registers at {batch.address}, "
                                         f"got {len(values)}")
        bank = self._regs[(batch.unit, batch.function)]
        for i, value in enumerate(values[: batch.count]):
            bank[batch.address + i] = value

    def words(self, unit: int, function: str, address: int, size: int) -> list[int]:
        """``size`` registers from ``address``."""
        bank = self._regs[(unit, function)]
        return [bank[address + i] for i in range(size)]


class TemplateDevice:
    """One device kind of one physical device, read and written through its template."""

    def __init__(
        self,
        link: ModbusLink,
        template: Template,
        kind: str,
        unit: int | None = None,
        params: dict[str, float] | None = None,
    ) -> None:
        kmap = template.kind(kind)
        if kmap is None:
            raise ValueError(f"template {template.id!r} has no {kind!r}; it has {template.kinds}")
        self.link = link
        self.template = template
        self.kind = kind
        self.kmap = kmap
        self.unit = template.unit_for(kind, unit)
        self.params = {**template.params, **(params or {})}
        spans: dict[Key, set[tuple[int, int]]] = defaultdict(set)
        for source in kmap.points.values():
            if isinstance(source, Register):
                self._add_spans(spans, source)
        self._batches = plan_reads(spans)
        self._allow_template_writes()

    def _allow_template_writes(self) -> None:
        """Tell the link which registers this device may write: exactly those of the
        template's control and PV-limit actions (the transport refuses any other)."""
        actions: list[list[Write]] = []
        if self.kmap.control is not None:
            c = self.kmap.control
            actions += [c.charge, c.discharge, c.idle, c.release]
        if self.template.pv_limit is not None and self.kind == "pv":
            actions += [self.template.pv_limit.set, self.template.pv_limit.release]
        for writes in actions:
            for w in writes:
                self.link.allow_writes(self._unit(w),
                                       range(w.address, w.address + WORDS[w.type]))

    def _unit(self, register: Register | Write) -> int:
        return self.unit if register.unit is None else register.unit

    def _add_spans(self, spans: dict[Key, set[tuple[int, int]]], reg: Register) -> None:
        key = (self._unit(reg), reg.function)
        for address in reg.addresses:
            spans[key].add((address, reg.size))
        if reg.sf_address is not None:
            spans[key].add((reg.sf_address, 1))
        for extra in reg.add:
            self._add_spans(spans, extra)

    async def _snapshot(self, batches: list[Batch]) -> RegisterSnapshot:
        snapshot = RegisterSnapshot()
        for batch in batches:
            values = await self.link.read(batch.address, batch.count, batch.unit, batch.function)
            snapshot.store(batch, values)
        return snapshot

    def _value(self, snapshot: RegisterSnapshot, reg: Register) -> float | None:
        unit, order = self._unit(reg), reg.word_order or self.template.word_order
        nan = tuple(reg.nan) if reg.nan is not None else None
        total = 0.0
        for address in reg.addresses:
            words = snapshot.words(unit, reg.function, address, reg.size)
            value = decode_number(words, reg.type, order, nan)
            if value is None and reg.nan_zero:
                value = 0.0  # asleep, not broken: see Register.nan_zero
            if value is None:
                return None
            total += value
        scale = reg.scale
        if reg.sf_address is not None:
            sf = decode_number(snapshot.words(unit, reg.function, reg.sf_address, 1), "s16", "big")
            if sf is None or not -10 <= sf <= 10:
                return None
            scale *= 10.0 ** int(sf)
        total *= scale
        for extra in reg.add:
            value = self._value(snapshot, extra)
            if value is None:
                return None
            total += value
        return total

    async def read_values(self) -> dict[str, float | None]:
        """Every declared point of this kind in Commonwatt units (``None`` if not available)."""
        snapshot = await self._snapshot(self._batches)
        out: dict[str, float | None] = {}
        for name, source in self.kmap.points.items():
            if isinstance(source, Param):
                out[name] = self.params[source.param]
            else:
                out[name] = self._value(snapshot, source)
        return out

    async def read_pv(self) -> PvReading:
        """PV production (W, ≥ 0) and lifetime energy (Wh)."""
        v = await self.read_values()
        return PvReading(power_w=v["power_w"], energy_wh=v.get("energy_wh"))

    async def read_meter(self) -> MeterReading:
        """Net power at the connection point (import > 0) and energy counters."""
        v = await self.read_values()
        return MeterReading(v["power_w"], v.get("import_wh"), v.get("export_wh"))

    async def read_battery(self) -> BatteryReading:
        """Battery power (discharge > 0), SoC, capacity and ratings."""
        v = await self.read_values()
        return BatteryReading(
            power_w=v["power_w"],
            soc_pct=v["soc_pct"],
            capacity_wh=v.get("capacity_wh"),
            max_charge_w=v.get("max_charge_w"),
            max_discharge_w=v.get("max_discharge_w"),
        )

    @property
    def needs_release(self) -> bool:
        """Whether this battery keeps a command until released (no device-side watchdog)."""
        control = self.kmap.control
        return control is not None and control.expiry == "controller"

    def control_writes(self, setpoint: Setpoint | None) -> list[tuple[int, int, list[int]]]:
        """The (unit, address, registers) writes for ``setpoint``; ``None`` means release."""
        control = self.kmap.control
        if control is None:
            raise DeviceError("not controllable", f"template {self.template.id} has no control")
        if setpoint is None:
            action, power = control.release, 0.0
        elif setpoint.power_w > 0.5:
            action, power = control.discharge, setpoint.power_w
        elif setpoint.power_w < -0.5:
            action, power = control.charge, setpoint.power_w
        else:
            action, power = control.idle, 0.0
        expiry = setpoint.expires_s if setpoint is not None else 0
        quantities = {
            **self.params,
            "power_w": power,
            "charge_w": max(-power, 0.0),
            "discharge_w": max(power, 0.0),
            "expiry_s": float(expiry),
            "expiry_min": float(max(1, math.ceil(expiry / 60))),
        }
        writes = []
        for w in action:
            value = quantities[w.value] if isinstance(w.value, str) else float(w.value)
            order = w.word_order or self.template.word_order
            writes.append((self._unit(w), w.address, encode_number(value * w.scale, w.type, order)))
        return writes

    async def write_setpoint(self, setpoint: Setpoint | None) -> None:
        """Command the battery (``None`` hands control back to the vendor's own logic).

        Writes go out in template order; address-adjacent writes to one unit
        are merged into one request.
        """
        await self._send(self.control_writes(setpoint))

    async def _send(self, writes: list[tuple[int, int, list[int]]]) -> None:
        merged: list[tuple[int, int, list[int]]] = []
        for unit, address, regs in writes:
            if merged and merged[-1][0] == unit and merged[-1][1] + len(merged[-1][2]) == address:
                merged[-1][2].extend(regs)
            else:
                merged.append((unit, address, list(regs)))
        for unit, address, regs in merged:
            await self.link.write(address, regs, unit)

    @property
    def limit_needs_release(self) -> bool:
        """Whether a PV limit stays until released (the inverter has no revert timer)."""
        control = self.template.pv_limit
        return control is not None and control.expiry == "controller"

    async def limit_writes(self, limit: PvLimit | None) -> list[tuple[int, int, list[int]]]:
        """The (unit, address, registers) writes for ``limit``; ``None`` means release.

        ``limit_w`` is clamped to ``0 … params.rated_w``; ``limit_pct`` is
        ``limit_w`` in % of ``params.rated_w``. Limit values are rounded down
        to the register's resolution (after ``scale`` and any ``sf_address``
        scale factor, read from the device), so the inverter never produces
        more than asked. ``revert_s`` is at least 1 s.
        """
        control = self.template.pv_limit
        if control is None or self.kind != "pv":
            raise DeviceError("not controllable", f"template {self.template.id} has no pv_limit")
        quantities = dict(self.params)
        if limit is None or limit.limit_w is None:
            action = control.release
        else:
            action = control.set
            rated = self.params.get("rated_w")
            if not rated and any(w.value == "limit_pct" for w in action):
                raise DeviceError("not configured", f"template {self.template.id}: set"
                                  " params.rated_w (the inverter's rated AC power in W)")
            limit_w = max(limit.limit_w, 0.0) if not rated else min(max(limit.limit_w, 0.0), rated)
            revert = max(1, int(limit.revert_s))
            quantities.update(limit_w=limit_w, limit_pct=100.0 * limit_w / rated if rated else 0.0,
                              expiry_s=float(revert), expiry_min=float(math.ceil(revert / 60)))
        writes = []
        for w in action:
            value = quantities[w.value] if isinstance(w.value, str) else float(w.value)
            scale = w.scale
            if w.sf_address is not None:
                words = await self.link.read(w.sf_address, 1, self._unit(w))
                sf = decode_number(words, "s16", "big")
                if sf is None or not -10 <= sf <= 10:
                    raise DeviceError("garbage", f"no scale factor at {w.sf_address}")
                scale /= 10.0 ** int(sf)
            raw = value * scale
            if w.value in ("limit_w", "limit_pct") and w.type != "f32" and scale > 0:
                raw = math.floor(raw + 1e-6)
            order = w.word_order or self.template.word_order
            writes.append((self._unit(w), w.address, encode_number(raw, w.type, order)))
        return writes

    async def write_limit(self, limit: PvLimit | None) -> None:
        """Cap PV output at ``limit.limit_w`` for ``limit.revert_s``; ``None`` releases it.

        With ``expiry = "device"`` the inverter drops the limit on its own when
        the revert time runs out; with ``"controller"`` it holds it until
        released (see :attr:`limit_needs_release`).
        """
        await self._send(await self.limit_writes(limit))

    async def identify(self) -> dict[str, str | None]:
        """Manufacturer, model and serial as far as the template can read them."""
        ident = self.template.identity
        unit = ident.unit if ident.unit is not None else self.unit
        out: dict[str, str | None] = {"manufacturer": self.template.manufacturer,
                                      "model": None, "serial": None}
        for name in ("manufacturer", "model", "serial"):
            reg = getattr(ident, name)
            if reg is None:
                continue
            address = reg.addresses[0]
            words = await self.link.read(address, reg.size, unit, reg.function)
            if reg.type == "str":
                out[name] = decode_string(words) or out[name]
            else:
                value = decode_number(words, reg.type, reg.word_order or self.template.word_order)
                out[name] = None if value is None else str(int(value))
        return out
