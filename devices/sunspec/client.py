"""SunSpec discovery and model reads over a shared Modbus link."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.modbus.transport import DeviceError, ModbusLink
from devices.sunspec.models import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    SUNS_MARKER,
    decode,
    encode_point,
    model_def,
    scaled_to_raw,
)

MAX_MODELS = 64
#: Per model, the points Commonwatt writes (PV limits: 123, 704; storage: 124, 704).
#: Only these are declared writable on the link; the transport refuses the rest.
CONTROL_POINTS: dict[int, frozenset[str]] = {
    123: frozenset({"WMaxLimPct", "WMaxLimPct_WinTms", "WMaxLimPct_RvrtTms", "WMaxLim_Ena"}),
    124: frozenset({"StorCtl_Mod", "OutWRte", "InWRte", "InOutWRte_WinTms",
                    "InOutWRte_RvrtTms", "ChaGriSet"}),
    704: frozenset({"WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrt", "WMaxLimPctEnaRvrt",
                    "WMaxLimPctRvrtTms", "WSetEna", "WSetMod", "WSet", "WSetEnaRvrt",
                    "WSetRvrtTms"}),
}


@dataclass(slots=True)
class ModelBlock:
    """Where one model sits in a device's map: address of its ID register, and L."""

    id: int
    address: int
    length: int


@dataclass(slots=True)
class SunSpecClient:
    """Reads SunSpec models from one unit id behind a :class:`ModbusLink`.

    Call :meth:`discover` once (it is called lazily by :meth:`read_model`); the
    model chain is cached until :meth:`forget` is called after an error.
    """

    link: ModbusLink
    unit: int
    models: dict[int, ModelBlock] = field(default_factory=dict)
    base: int | None = None

    async def discover(self) -> dict[int, ModelBlock]:
        """Find the "SunS" marker and walk the model chain to its end marker."""
        self.models = {}
        for base in BASE_ADDRESSES:
            try:
                marker = await self.link.read(base, 2, self.unit)
            except DeviceError as exc:
                if exc.reason.startswith("exception 2"):
                    continue
                raise
            if tuple(marker) == SUNS_MARKER:
                self.base = base
                break
        else:
            raise DeviceError("no SunSpec marker", f"{self.link.name} unit {self.unit}")
        address = self.base + 2
        for _ in range(MAX_MODELS):
            model_id, length = await self.link.read(address, 2, self.unit)
            if model_id == END_MODEL_ID:
                return self.models
            if model_id not in self.models:
                self.models[model_id] = ModelBlock(model_id, address, length)
                self._allow_control_points(self.models[model_id])
            address += 2 + length
        raise DeviceError("garbage", f"SunSpec model chain has no end after {MAX_MODELS} models")

    def _allow_control_points(self, block: ModelBlock) -> None:
        names = CONTROL_POINTS.get(block.id)
        if not names:
            return
        points = model_def(block.id).points
        for name in names & points.keys():
            p = points[name]
            start = block.address + p.offset
            self.link.allow_writes(self.unit, range(start, start + p.size))

    def forget(self) -> None:
        """Drop the cached model chain; the next read rediscovers it."""
        self.models = {}

    def has(self, model_id: int) -> bool:
        """Whether the discovered chain holds ``model_id``."""
        return model_id in self.models

    async def _block(self, model_id: int) -> ModelBlock:
        """Where ``model_id`` sits, discovering the chain first if it is not cached."""
        if not self.models:
            await self.discover()
        block = self.models.get(model_id)
        if block is None:
            raise DeviceError("missing model", f"device has no SunSpec model {model_id}")
        return block

    async def first_model(self, candidates: tuple[int, ...], kind: str) -> int:
        """The first of ``candidates`` the device has (discovering if needed)."""
        if not self.models:
            await self.discover()
        for model_id in candidates:
            if model_id in self.models:
                return model_id
        raise DeviceError("missing model", f"no SunSpec {kind} model among {candidates}")

    async def read_model(
        self, model_id: int, names: tuple[str, ...] | None = None
    ) -> dict[str, int | float | str | None]:
        """Read one model in a single request (split only above 125 registers) and decode
        it, or only the points in ``names``."""
        block = await self._block(model_id)
        definition = model_def(model_id)
        size = min(block.length, definition.length) + 2
        regs = await self.link.read(block.address, size, self.unit)
        if regs[0] != model_id:
            self.forget()
            raise DeviceError("garbage", f"model {model_id} moved; rediscovering")
        regs += [0] * (definition.length + 2 - len(regs))
        return decode(definition, regs, names)

    async def write_points(
        self, model_id: int, values: dict[str, float], sf: dict[str, int]
    ) -> None:
        """Write scaled values to points of one model, one request per contiguous run.

        Only the named points are written, so read-only neighbours are never touched.
        """
        block = await self._block(model_id)
        points = model_def(model_id).points
        chosen = sorted((points[name] for name in values), key=lambda p: p.offset)
        run_start, run_regs = chosen[0].offset, []
        for point in chosen:
            if point.offset != run_start + len(run_regs):
                await self.link.write(block.address + run_start, run_regs, self.unit)
                run_start, run_regs = point.offset, []
            raw = scaled_to_raw(values[point.name], sf.get(point.name, 0))
            run_regs += encode_point(point, raw)
        await self.link.write(block.address + run_start, run_regs, self.unit)
