"""SunSpec model layouts, taken from pysunspec2's shipped JSON definitions.

Only the fixed (non-repeating) top-level points of a model are laid out; that
covers the common, inverter, meter, storage and battery models the controller
reads. Decoding applies scale factors and turns the "not implemented"
sentinels into ``None``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pymodbus.client import ModbusTcpClient

DATATYPE = ModbusTcpClient.DATATYPE

#: Where a SunSpec map may start; the first two registers hold "SunS".
BASE_ADDRESSES = (40000, 0, 50000)
SUNS_MARKER = (0x5375, 0x6E53)
END_MODEL_ID = 0xFFFF

_NUMERIC: dict[str, tuple[DATATYPE, int | None]] = {
    # type: (pymodbus data type, raw sentinel for "not implemented")
    "int16": (DATATYPE.INT16, -0x8000),
    "sunssf": (DATATYPE.INT16, -0x8000),
    "uint16": (DATATYPE.UINT16, 0xFFFF),
    "enum16": (DATATYPE.UINT16, 0xFFFF),
    "bitfield16": (DATATYPE.UINT16, 0xFFFF),
    "count": (DATATYPE.UINT16, 0xFFFF),
    "acc16": (DATATYPE.UINT16, 0),
    "int32": (DATATYPE.INT32, -0x80000000),
    "uint32": (DATATYPE.UINT32, 0xFFFFFFFF),
    "enum32": (DATATYPE.UINT32, 0xFFFFFFFF),
    "bitfield32": (DATATYPE.UINT32, 0xFFFFFFFF),
    "acc32": (DATATYPE.UINT32, 0),
    "int64": (DATATYPE.INT64, -0x8000000000000000),
    "uint64": (DATATYPE.UINT64, 0xFFFFFFFFFFFFFFFF),
    "acc64": (DATATYPE.UINT64, 0),
    "float32": (DATATYPE.FLOAT32, None),
}


@dataclass(frozen=True, slots=True)
class Point:
    """One SunSpec point: its offset from the model's ID register, type and scale."""

    name: str
    type: str
    size: int
    offset: int
    sf: str | None
    units: str | None


@dataclass(frozen=True, slots=True)
class ModelDef:
    """The fixed layout of one SunSpec model."""

    id: int
    name: str
    points: dict[str, Point]

    @property
    def length(self) -> int:
        """The model's ``L`` value: registers after the ID and L registers."""
        return sum(p.size for p in self.points.values()) - 2


@cache
def model_def(model_id: int) -> ModelDef:
    """Layout of model ``model_id`` from pysunspec2's JSON definition."""
    path = resources.files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    try:
        group = json.loads(path.read_text())["group"]
    except FileNotFoundError:
        raise KeyError(f"SunSpec model {model_id} has no definition in pysunspec2") from None
    points: dict[str, Point] = {}
    offset = 0
    for p in group["points"]:
        points[p["name"]] = Point(
            p["name"], p["type"], int(p["size"]), offset, p.get("sf"), p.get("units")
        )
        offset += int(p["size"])
    return ModelDef(model_id, group["name"], points)


def _raw(point: Point, regs: list[int]) -> int | float | str | None:
    chunk = regs[point.offset : point.offset + point.size]
    if point.type == "string":
        if not any(chunk):
            return None
        text = ModbusTcpClient.convert_from_registers(chunk, DATATYPE.STRING)
        return str(text).rstrip("\x00 ")
    if point.type == "pad" or point.type not in _NUMERIC:
        return None
    datatype, sentinel = _NUMERIC[point.type]
    value = ModbusTcpClient.convert_from_registers(chunk, datatype)
    if isinstance(value, float) and math.isnan(value):
        return None
    return None if value == sentinel else value  # type: ignore[return-value]


def decode(
    model: ModelDef, regs: list[int], names: tuple[str, ...] | None = None
) -> dict[str, int | float | str | None]:
    """Decode one model block (starting at its ID register) to scaled values.

    A value is ``None`` when its register holds the "not implemented"
    sentinel or when its scale factor does. With ``names``, only those points
    (and their scale factors) are decoded, which is what a poll cycle needs.
    """
    wanted = model.points if names is None else _with_sf(model.id, names)
    raw = {name: _raw(model.points[name], regs) for name in wanted}
    values: dict[str, int | float | str | None] = {}
    for name in wanted:
        point = model.points[name]
        value = raw[name]
        if point.sf and value is not None:
            scale = raw.get(point.sf) if point.sf in raw else _int_or_none(point.sf)
            value = None if scale is None else value * 10.0 ** int(scale)  # type: ignore[operator]
        values[name] = value
    return values


@cache
def _with_sf(model_id: int, names: tuple[str, ...]) -> tuple[str, ...]:
    model = model_def(model_id)
    extra = [model.points[n].sf for n in names if model.points[n].sf in model.points]
    return tuple(dict.fromkeys([*names, *extra]))  # type: ignore[list-item]


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def encode_point(point: Point, value: int | float | str | None) -> list[int]:
    """Registers for one raw (unscaled) value; ``None`` writes the sentinel."""
    if point.type == "string":
        data = (str(value or "")).encode()[: point.size * 2].ljust(point.size * 2, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.type == "pad" or point.type not in _NUMERIC:
        return [0] * point.size
    datatype, sentinel = _NUMERIC[point.type]
    if value is None:
        value = float("nan") if sentinel is None else sentinel
    if datatype is not DATATYPE.FLOAT32:
        value = int(value)
    return ModbusTcpClient.convert_to_registers(value, datatype)


def scaled_to_raw(value: float, sf: int) -> int:
    """The integer register value that represents ``value`` at scale factor ``sf``."""
    return round(value / 10.0**sf)
