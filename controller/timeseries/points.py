"""Pure builders of InfluxDB line protocol for the controller's time series.

Two measurements, both tagged by ``member``:

``commonwatt_live``
    One point per member and cycle: the measured and commanded powers (W),
    the state of charge (%) and whether the member's readings were valid.
    Non-finite values (a device that did not answer) are left out, so a gap
    shows as a gap and not as a zero.

``commonwatt_member``
    One point per member per booked interval, at the interval's end: the
    integer Wh of every ledger field as ``<field>_wh``, ``liberated_wh``, the
    interval's length and whether it is provisional. A point tagged
    ``member=_coop`` carries the coop's sums.

The strings are written by hand rather than through ``influxdb_client.Point``
because a coop of a thousand members builds a thousand points a second, and
the format needed here (one tag, numeric and bool fields) is small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from dispatch.rounding import LIBERATED_FIELDS

LIVE = "commonwatt_live"
MEMBER = "commonwatt_member"
#: The ``member`` tag of the coop-wide sums in ``commonwatt_member``.
COOP = "_coop"


def live_points(
    ts: float, member_ids: Sequence[str], arrays: Mapping[str, np.ndarray], valid: np.ndarray,
) -> list[str]:
    """One ``commonwatt_live`` point per member at ``ts`` (seconds since the epoch).

    Args:
        ts: the sample time.
        member_ids: the members, in the arrays' order.
        arrays: field name → one float per member (e.g. ``pv_w``, ``meter_w``,
            ``battery_w``, ``soc_pct``, ``setpoint_w``); NaN and inf are left out.
        valid: one bool per member, written as the ``valid`` field.

    Returns:
        Line-protocol lines, one per member, in ``member_ids`` order.
    """
    n = len(member_ids)
    stamp = _ns(ts)
    columns = [(_key(name), _column(name, values, n, np.float64))
               for name, values in arrays.items()]
    flags = np.broadcast_to(np.asarray(valid, dtype=bool), (n,)).tolist()
    out = []
    for i, member in enumerate(member_ids):
        fields = [f"{key}={col[i]!r}" for key, col in columns if math.isfinite(col[i])]
        fields.append("valid=true" if flags[i] else "valid=false")
        out.append(f"{LIVE},member={_tag(member)} {','.join(fields)} {stamp}")
    return out


def interval_points(
    start_ts: float, end_ts: float, member_ids: Sequence[str],
    booked: Mapping[str, np.ndarray], provisional: bool = False,
) -> list[str]:
    """``commonwatt_member`` points for one booked interval, at ``end_ts``.

    Args:
        start_ts: the interval's start (s since the epoch); only its length is
            written, as the float field ``interval_s``.
        end_ts: the interval's end, the points' time.
        member_ids: the members, in the arrays' order; none may be ``"_coop"``.
        booked: ledger field → integer Wh per member; every field is written as
            the integer field ``<field>_wh``. It must hold the fields of
            ``dispatch.rounding.LIBERATED_FIELDS``, summed into ``liberated_wh``.
        provisional: written as the bool field ``provisional``. It is a field,
            not a tag, so that rewriting the interval once it is final lands on
            the same series and time and replaces the provisional values.

    Returns:
        One line per member in ``member_ids`` order, then the coop's line
        (``member=_coop``) with the sum of every integer field.
    """
    if COOP in member_ids:
        raise ValueError(f"a member is named {COOP!r}, the tag reserved for the coop's sums")
    missing = [name for name in LIBERATED_FIELDS if name not in booked]
    if missing:
        raise ValueError(f"booked lacks {missing}, needed for liberated_wh")
    n = len(member_ids)
    columns = {name: _column(name, values, n, np.int64) for name, values in booked.items()}
    keys = [f"{_key(name)}_wh" for name in columns] + ["liberated_wh"]
    liberated = np.sum([columns[name] for name in LIBERATED_FIELDS], axis=0, dtype=np.int64)
    table = np.column_stack([*columns.values(), liberated]).astype(np.int64).reshape(n, len(keys))
    flag = "true" if provisional else "false"
    tail = f",interval_s={float(end_ts - start_ts)!r},provisional={flag} {_ns(end_ts)}"
    out = []
    for member, row in zip([*member_ids, COOP], [*table.tolist(), table.sum(axis=0).tolist()],
                           strict=True):
        fields = ",".join(f"{key}={value}i" for key, value in zip(keys, row, strict=True))
        out.append(f"{MEMBER},member={_tag(member)} {fields}{tail}")
    return out


def _column(name: str, values: np.ndarray, n: int, dtype: type) -> list:
    """One array as a Python list of ``n`` values, checked for length and kind."""
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name!r} has shape {array.shape}, expected ({n},)")
    if dtype is np.int64 and not np.issubdtype(array.dtype, np.integer):
        # Wh are booked as integers; a float here would be silently truncated.
        raise TypeError(f"{name!r} must hold integer Wh, got dtype {array.dtype}")
    return array.astype(dtype).tolist()


def _ns(ts: float) -> int:
    """Seconds → integer nanoseconds, without the float error of ``ts * 1e9``."""
    whole = math.floor(ts)
    return whole * 1_000_000_000 + round((ts - whole) * 1e9)


def _key(name: str) -> str:
    """A field key with line protocol's special characters escaped."""
    return name.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _tag(value: str) -> str:
    """A tag value escaped like a key; line protocol cannot carry a newline."""
    if not value or "\n" in value:
        raise ValueError(f"{value!r} cannot be a tag value")
    return _key(value)
