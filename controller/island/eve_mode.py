"""A battery's prior mode, read before the island eve and written back after it.

For a SunSpec battery the mode is model 124's storage control points, the very
ones Commonwatt may write (:data:`devices.sunspec.client.CONTROL_POINTS`):
``StorCtl_Mod`` (which limits are active), ``InWRte``/``OutWRte`` (the rates),
their window and revert timers, and ``ChaGriSet`` (grid charging allowed). The
eve changes ``ChaGriSet`` to charge from the grid and forces charge rates; the
owner's setting of ``ChaGriSet`` (an installer's "no grid charging", a tariff)
must come back when the eve ends, and the restore counts only when a read-back
of every point agrees with what was recorded.

A battery without model 124 (a template device, model 704 only) has no mode
this module can read: its prior mode is ``None`` and the eve's end releases it
to its own logic instead, said as such in the audit row.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.sunspec.client import CONTROL_POINTS, SunSpecClient
from devices.sunspec.models import model_def

#: Model 124 points that make up a battery's mode, in write order (the rates before the
#: mode bits that activate them, so no intermediate state forces an old rate).
MODE_POINTS = ("ChaGriSet", "InWRte", "OutWRte", "InOutWRte_WinTms", "InOutWRte_RvrtTms",
               "StorCtl_Mod")
_SF = {"InWRte": "InOutWRte_SF", "OutWRte": "InOutWRte_SF"}
assert set(MODE_POINTS) == CONTROL_POINTS[124]  # the mode is exactly what may be written


@dataclass(frozen=True, slots=True)
class PriorMode:
    """Model 124's control points as read (scaled values; None: not implemented)."""

    points: dict[str, float | None]
    sf: dict[str, int]

    def as_dict(self) -> dict[str, float | None]:
        """For the audit row."""
        return dict(self.points)


@dataclass(frozen=True, slots=True)
class Restore:
    """What a restore found on read-back: each point that disagrees (wanted, read)."""

    mismatched: dict[str, tuple[float | None, float | None]]

    @property
    def ok(self) -> bool:
        """Every point reads back as recorded."""
        return not self.mismatched


async def read_mode(client: SunSpecClient) -> PriorMode | None:
    """The battery's mode now; None if it has no model 124."""
    if not client.models:
        await client.discover()
    if not client.has(124):
        return None
    values = await client.read_model(124)
    sf = {name: int(values.get(_SF[name]) or 0) for name in _SF}
    return PriorMode({p: _num(values.get(p)) for p in MODE_POINTS}, sf)


async def restore_mode(client: SunSpecClient, prior: PriorMode) -> Restore:
    """Write ``prior`` back and read it back.

    A point that read "not implemented" (SunSpec's sentinel) gets the sentinel back: the
    eve's charge may have written it (a revert timer), and the owner had none.
    """
    points = model_def(124).points
    for name in MODE_POINTS:  # one write per point, in order (see MODE_POINTS)
        value = prior.points[name]
        if value is None:
            await client.write_points(124, {name: float(_sentinel(points[name].type))}, sf={})
        else:
            await client.write_points(124, {name: value}, sf={name: prior.sf.get(name, 0)})
    now = await read_mode(client)
    read = {} if now is None else now.points
    mismatched = {}
    for name, want in prior.points.items():
        got = read.get(name)
        tol = 0.5 * 10.0 ** prior.sf.get(name, 0)
        if (want is None) != (got is None) or (
                want is not None and got is not None and abs(got - want) > tol):
            mismatched[name] = (want, got)
    return Restore(mismatched)


def _sentinel(point_type: str) -> int:
    """SunSpec's "not implemented" for an integer point type, as a signed/unsigned value."""
    return {"int16": -0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF,
            "count": 0xFFFF}[point_type]


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
