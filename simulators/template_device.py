"""Simulated vendor devices built from their device templates.

:class:`TemplateImage` lays out every register a template names (per unit
id) and stores engineering values in them the way the vendor encodes them.
It also reads control writes back: which action (charge, discharge, idle,
release) the registers now hold, and at what power and expiry, and whether
the ``[pv_limit]`` registers hold a limit (and which) or its release.
:class:`TemplateHousehold` serves one household's hybrid device on a
127.0.0.1 port, driven by :class:`~simulators.household.HouseholdPhysics`:
a PV limit caps the simulated PV, and with ``expiry = "device"`` it lapses
when its revert time runs out on the simulated clock, the registers going
back to their release values as a real inverter's would.
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
#: What scale-factor registers of limit writes hold: 0.01 % steps, as Fronius documents.
LIMIT_SF = -2


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


@dataclass(frozen=True, slots=True)
class LimitState:
    """A PV limit decoded from the ``[pv_limit]`` registers (``released`` = no limit)."""

    released: bool
    limit_w: float | None = None
    limit_pct: float | None = None
    expiry_s: float | None = None


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
        for unit, write in self._writes() + self._limit_writes():
            spans.setdefault(unit, []).append((write.address, WORDS[write.type]))
            if write.sf_address is not None:
                spans.setdefault(unit, []).append((write.sf_address, 1))
        self.blocks: dict[int, UnitBlock] = {}
        for unit, items in spans.items():
            low = min(a for a, _ in items)
            self.blocks[unit] = UnitBlock(low, [0] * (max(a + n for a, n in items) - low))
        for unit, reg in self._registers():
            if reg.type != "str":
                for address in reg.addresses:
                    self._put(unit, address, encode_number(None, reg.type, self._order(reg)))
        for unit, write in self._limit_writes():
            if write.sf_address is not None:
                self._put(unit, write.sf_address, encode_number(LIMIT_SF, "s16", "big"))
        self.release_limit()
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

    def _limit_writes(self) -> list[tuple[int, Write]]:
        control = self.template.pv_limit
        if control is None:
            return []
        unit = self.template.unit_for("pv")
        return [(unit if w.unit is None else w.unit, w) for w in (*control.set, *control.release)]

    def limit_addresses(self) -> set[tuple[int, int]]:
        """Every (unit, register) a ``[pv_limit]`` write touches."""
        return {(unit, w.address + i) for unit, w in self._limit_writes()
                for i in range(WORDS[w.type])}

    def _write_scale(self, unit: int, write: Write) -> float:
        """Register value per engineering unit: ``scale``, divided by 10^sf if it has one."""
        if write.sf_address is None:
            return write.scale
        sf = decode_number(self.words(unit, write.sf_address, 1), "s16", "big") or 0.0
        return write.scale / 10.0 ** int(sf)

    def release_limit(self) -> None:
        """Store the release writes, as an inverter does when it drops its limit."""
        control = self.template.pv_limit
        if control is None:
            return
        unit0 = self.template.unit_for("pv")
        params = self.template.params
        for w in control.release:
            unit = unit0 if w.unit is None else w.unit
            value = float(params[w.value]) if isinstance(w.value, str) else float(w.value)
            raw = value * self._write_scale(unit, w)
            self._put(unit, w.address, encode_number(raw, w.type, self._order(w)))

    def pv_limit(self) -> LimitState | None:
        """The PV limit the ``[pv_limit]`` registers now hold: release is checked first."""
        control = self.template.pv_limit
        if control is None:
            return None
        unit0 = self.template.unit_for("pv")
        for action in ("release", "set"):
            found: dict[str, float | None] = {}
            for w in getattr(control, action):
                unit = unit0 if w.unit is None else w.unit
                raw = self._number(unit, w, w.address)
                value = None if raw is None else raw / self._write_scale(unit, w)
                if isinstance(w.value, int | float) or w.value in self.template.params:
                    want = (float(self.template.params[w.value]) if isinstance(w.value, str)
                            else float(w.value))
                    if value is None or not math.isclose(value, want, abs_tol=0.5):
                        break
                else:
                    found[w.value] = value
            else:
                if action == "release":
                    return LimitState(released=True)
                expiry = found.get("expiry_s")
                if found.get("expiry_min") is not None:
                    expiry = 60.0 * found["expiry_min"]  # type: ignore[operator]
                return LimitState(False, found.get("limit_w"), found.get("limit_pct"), expiry)
        return None

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
        rated_w: float | None = None,
    ) -> None:
        self.template = template
        self.clock = clock
        self.physics = HouseholdPhysics([spec])
        self.image = TemplateImage(template, identity)
        self.server = SimulatedModbusServer(port, self.image.blocks, self._on_write, host=host)
        self.last_command: Command | None = None
        self.last_limit: LimitState | None = None
        self.rated_w = spec.pv_kwp * 1000.0 if rated_w is None else rated_w
        self._limit_registers = self.image.limit_addresses()

    def _on_write(self, unit: int, offset: int, values: list[int]) -> None:
        address = self.image.blocks[unit].base + offset
        if any((unit, address + i) in self._limit_registers for i in range(len(values))):
            self._apply_limit()
            return
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

    def _apply_limit(self) -> None:
        """Cap the simulated PV as the ``[pv_limit]`` registers now say."""
        state = self.image.pv_limit()
        control = self.template.pv_limit
        if state is None or control is None:
            return  # half-way through a sequence of writes
        self.last_limit = state
        if state.released:
            self.physics.limit_pv(0, None, -math.inf)
            return
        limit_w = state.limit_w
        if limit_w is None and state.limit_pct is not None:
            limit_w = state.limit_pct / 100.0 * self.rated_w
        device = control.expiry == "device" and state.expiry_s
        expires = self.clock.now() + state.expiry_s if device else math.inf  # type: ignore[operator]
        self.physics.limit_pv(0, limit_w, expires)

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
            state = self.last_limit
            if state is not None and not state.released and not p.pv_limited(t)[0]:
                image.release_limit()  # the inverter's revert timer ran out
                self.last_limit = LimitState(released=True)
            image.set("pv", "power_w", float(p.pv_w(t)[0]))
            image.set("pv", "energy_wh", float(p.pv_wh[0]))
        if "meter" in kinds:
            image.set("meter", "power_w", float(p.meter_w(t)[0]))
            image.set("meter", "import_wh", float(p.import_wh[0]))
            image.set("meter", "export_wh", float(p.export_wh[0]))
