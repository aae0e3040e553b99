"""A SunSpec register map built from pysunspec2 model definitions.

The image is a plain list of 16-bit registers starting at a base address
(40000 by default): the "SunS" marker, each model with its ID and L, then
the end marker. Values are set by point name, scaled with the scale factor
the image itself holds, exactly as a real device would expose them.
"""

from __future__ import annotations

from devices.sunspec.models import (
    END_MODEL_ID,
    SUNS_MARKER,
    ModelDef,
    encode_point,
    model_def,
    scaled_to_raw,
)


class SunSpecImage:
    """Registers of one SunSpec device (one unit id)."""

    def __init__(
        self, models: list[tuple[int, dict[str, int | float | str]]], base: int = 40000
    ) -> None:
        self.base = base
        self.regs: list[int] = list(SUNS_MARKER)
        self.offsets: dict[int, int] = {}
        for model_id, raw_values in models:
            definition = model_def(model_id)
            self.offsets[model_id] = len(self.regs)
            block = [0] * (definition.length + 2)
            for point in definition.points.values():
                block[point.offset : point.offset + point.size] = encode_point(point, None)
            block[0], block[1] = model_id, definition.length
            self.regs += block
            for name, value in raw_values.items():
                self.set_raw(model_id, name, value)
        self.regs += [END_MODEL_ID, 0]

    def _point(self, model_id: int, name: str) -> tuple[ModelDef, int]:
        definition = model_def(model_id)
        return definition, self.offsets[model_id] + definition.points[name].offset

    def set_raw(self, model_id: int, name: str, value: int | float | str | None) -> None:
        """Store an unscaled register value (``None`` stores the sentinel)."""
        definition, start = self._point(model_id, name)
        point = definition.points[name]
        self.regs[start : start + point.size] = encode_point(point, value)

    def get_raw(self, model_id: int, name: str) -> int:
        """The raw register value of a 1-register point (no scaling)."""
        _, start = self._point(model_id, name)
        value = self.regs[start]
        return value - 0x10000 if value >= 0x8000 and self._signed(model_id, name) else value

    def _signed(self, model_id: int, name: str) -> bool:
        return model_def(model_id).points[name].type in ("int16", "sunssf")

    def set(self, model_id: int, name: str, value: float | None) -> None:
        """Store a value in engineering units, applying the point's scale factor."""
        point = model_def(model_id).points[name]
        if value is None or not point.sf:
            self.set_raw(model_id, name, None if value is None else round(value))
            return
        self.set_raw(model_id, name, scaled_to_raw(value, self.get_raw(model_id, point.sf)))

    def get(self, model_id: int, name: str) -> float:
        """A 1-register value in engineering units."""
        point = model_def(model_id).points[name]
        raw = self.get_raw(model_id, name)
        return raw * 10.0 ** self.get_raw(model_id, point.sf) if point.sf else float(raw)

    def model_at(self, register: int) -> int | None:
        """Which model holds the register at image index ``register``."""
        for model_id, offset in self.offsets.items():
            if offset <= register < offset + model_def(model_id).length + 2:
                return model_id
        return None
