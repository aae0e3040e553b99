"""Simulated vendor devices built from their device templates.

:class:`TemplateImage` lays out every register a template names (per unit
id) and stores engineering values in them the way the vendor encodes them.
It also reads control writes back: which action (charge, discharge, idle,
release) the registers now hold, and at what power and expiry.
:class:`TemplateHousehold` serves one household's hybrid device on a
127.0.0.1 port, driven by :class:`~simulators.household.HouseholdPhysics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devices.templates.codec import decode_number, encode_number, encode_string
from devices.templates.schema import WORDS, Param, Register, Template, Write
from simulators.clock import SimClock
from simulators.household import HouseholdPhysics, HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer

ACTIONS = ("charge", "discharge", "idle", "release")


@dataclass(slots=True)
class UnitBlock:
    """The registers of one unit id, from ``base`` on."""

    base: int
    regs: list[int]


@dataclass(frozen=True, slots=True)
class Command:
    """A battery command decoded from control registers."""

    action: str
    power_w: float
    expiry_s: float | None


class TemplateImage:
    """Every register of one template device, all unit ids."""

    def __init__(self, template: Template, identity: dict[str, str] | None = None) -> None:
        self.template = template
        spans: dict[int, list[tuple[int, int]]] = {}
        for unit, reg in self._registers():
            for address in reg.addresses:
                spans.setdefault(unit, []).append((address, reg.size))
            if reg.sf_address is not None:
                spans.setdefault(unit, []).append((reg.sf_address, 1))
        for unit, write in self._writes():
            spans.setdefault(unit, []).append((write.address, WORDS[write.type]))
        self.blocks: dict[int, UnitBlock] = {}
        for unit, items in spans.items():
            low = min(a for a, _ in items)
            self.blocks[unit] = UnitBlock(low, [0] * (max(a + n for a, n in items) - low))
        for unit, reg in self._registers():
            if reg.type != "str":
                for address in reg.addresses:
                    self._put(unit, address, encode_number(None, reg.type, self._order(reg)))
        for name, text in (identity or {}).items():
            reg = getattr(template.identity, name)
            if reg is not None:
                self._put(self._ident_unit(), reg.addresses[0], self._ident_words(reg, text))

    def _ident_unit(self) -> int:
        ident = self.template.identity
        return ident.unit if ident.unit is not None else self.template.default_unit

    def _ident_words(self, reg: Register, text: str) -> list[int]:
        if reg.type == "str":
            return encode_string(text, reg.size)
        return encode_number(float(text), reg.type, self._order(reg))

    def _order(self, reg: Register | Write) -> str:
        return reg.word_order or self.template.word_order

    def _registers(self) -> list[tuple[int, Register]]:
        out = []
        for kind in self.template.kinds:
            kmap = self.template.kind(kind)
            assert kmap is not None
            base_unit = self.template.unit_for(kind)
            stack = [s for s in kmap.points.values() if isinstance(s, Register)]
            while stack:
                reg = stack.pop()
                out.append((base_unit if reg.unit is None else reg.unit, reg))
                stack.extend(reg.add)
        ident = self.template.identity
        for name in ("manufacturer", "model", "serial"):
            reg = getattr(ident, name)
            if reg is not None:
                out.append((self._ident_unit(), reg))
        return out

    def _writes(self) -> list[tuple[int, Write]]:
        kmap = self.template.battery
        if kmap is None or kmap.control is None:
            return []
        unit = self.template.unit_for("battery")
        return [
            (unit if w.unit is None else w.unit, w)
            for action in ACTIONS
            for w in getattr(kmap.control, action)
        ]

    def _put(self, unit: int, address: int, words: list[int]) -> None:
        block = self.blocks[unit]
        block.regs[address - block.base : address - block.base + len(words)] = words

    def words(self, unit: int, address: int, size: int) -> list[int]:
        """``size`` registers of ``unit`` from ``address``."""
        block = self.blocks[unit]
        return block.regs[address - block.base : address - block.base + size]

    def _number(self, unit: int, reg: Register | Write, address: int) -> float | None:
        return decode_number(self.words(unit, address, WORDS[reg.type]), reg.type,
                             self._order(reg))

    def _scale(self, unit: int, reg: Register) -> float:
        if reg.sf_address is None:
            return reg.scale
        sf = decode_number(self.words(unit, reg.sf_address, 1), "s16", "big") or 0.0
        return reg.scale * 10.0 ** int(sf)

    def _reg_value(self, unit: int, reg: Register) -> float:
        total = sum(self._number(unit, reg, a) or 0.0 for a in reg.addresses)
        value = total * self._scale(unit, reg)
        return value + sum(self._reg_value(unit if e.unit is None else e.unit, e) for e in reg.add)

    def _store(self, unit: int, reg: Register, value: float | None) -> None:
        first, rest = reg.addresses[0], reg.addresses[1:]
        order = self._order(reg)
        if value is None:
            self._put(unit, first, encode_number(None, reg.type, order))
            return
        for address in rest:
            self._put(unit, address, encode_number(0.0, reg.type, order))
        if reg.type.startswith("u") and reg.add:
            # An unsigned pair (drawn/fed, charge/discharge): each side holds one sign.
            partner = reg.add[0]
            raw = max(value, 0.0) / self._scale(unit, reg)
            self._store(unit, partner, min(value, 0.0))
        else:
            remainder = value - sum(self._reg_value(unit, e) for e in reg.add)
            raw = remainder / self._scale(unit, reg)
        self._put(unit, first, encode_number(raw, reg.type, order))

    def set(self, kind: str, name: str, value: float | None) -> None:
        """Store ``value`` (Commonwatt units and signs) into the point ``kind.name``."""
        kmap = self.template.kind(kind)
        assert kmap is not None
        source = kmap.points.get(name)
        if source is None or isinstance(source, Param):
            return
        unit = self.template.unit_for(kind)
        self._store(unit if source.unit is None else source.unit, source, value)

    def set_raw(self, unit: int, address: int, words: list[int]) -> None:
        """Overwrite registers directly (fault injection: sentinels, resets)."""
        self._put(unit, address, words)

    def command(self) -> Command | None:
        """The battery action the control registers now hold, if any matches."""
        kmap = self.template.battery
        if kmap is None or kmap.control is None:
            return None
        unit0 = self.template.unit_for("battery")
        params = {**self.template.params}
        for action in ACTIONS:
            power, expiry, matched = 0.0, None, True
            for w in getattr(kmap.control, action):
                unit = unit0 if w.unit is None else w.unit
                value = self._number(unit, w, w.address)
                value = None if value is None else value / w.scale
                if isinstance(w.value, int | float) or w.value in params:
                    want = float(params[w.value]) if isinstance(w.value, str) else float(w.value)
                    if value is None or not math.isclose(value, want, abs_tol=0.5):
                        matched = False
                        break
                elif w.value == "charge_w":
                    power = -(value or 0.0)
                elif w.value in ("discharge_w", "power_w"):
                    power = value or 0.0
                elif w.value == "expiry_s":
                    expiry = value
                elif w.value == "expiry_min":
                    expiry = None if value is None else 60.0 * value
            if matched:
                if action in ("charge", "discharge") and power:
                    action = "discharge" if power > 0 else "charge"  # one signed register
                return Command(action, power, expiry)
        return None


class TemplateHousehold:
    """One household whose devices are one vendor family, served on one port."""

    def __init__(
        self, template: Template, spec: HouseholdSpec, port: int, clock: SimClock,
        identity: dict[str, str] | None = None, host: str = "127.0.0.1",
    ) -> None:
        self.template = template
        self.clock = clock
        self.physics = HouseholdPhysics([spec])
        self.image = TemplateImage(template, identity)
        self.server = SimulatedModbusServer(port, self.image.blocks, self._on_write, host=host)
        self.last_command: Command | None = None

    def _on_write(self, unit: int, offset: int, values: list[int]) -> None:
        command = self.image.command()
        if command is None:
            return
        self.last_command = command
        now = self.clock.now()
        if command.action == "release":
            self.physics.command(0, 0.0, -math.inf)
            return
        if self.template.battery and self.template.battery.control:
            device_expiry = self.template.battery.control.expiry == "device"
        else:
            device_expiry = False
        expires = now + command.expiry_s if device_expiry and command.expiry_s else math.inf
        self.physics.command(0, command.power_w, expires)

    async def start(self) -> None:
        """Publish the first values and start serving."""
        self.step()
        await self.server.start()

    async def stop(self) -> None:
        """Stop serving."""
        await self.server.stop()

    def step(self) -> None:
        """Advance the physics to the clock and refresh every register."""
        t = self.clock.now()
        p = self.physics
        p.advance_to(t)
        image, kinds = self.image, self.template.kinds
        if "battery" in kinds:
            image.set("battery", "power_w", float(p.battery_w[0]))
            image.set("battery", "soc_pct", float(p.soc_pct()[0]))
            image.set("battery", "capacity_wh", float(p.capacity_wh[0]))
            image.set("battery", "max_charge_w", float(p.max_w[0]))
            image.set("battery", "max_discharge_w", float(p.max_w[0]))
        if "pv" in kinds:
            image.set("pv", "power_w", float(p.pv_w(t)[0]))
            image.set("pv", "energy_wh", float(p.pv_wh[0]))
        if "meter" in kinds:
            image.set("meter", "power_w", float(p.meter_w(t)[0]))
            image.set("meter", "import_wh", float(p.import_wh[0]))
            image.set("meter", "export_wh", float(p.export_wh[0]))
