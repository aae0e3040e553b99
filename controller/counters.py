"""Energy-counter checks: resets are detected and never booked, and counters are
cross-checked against the integrated power readings.

A meter's Wh counters only ever grow (Home Assistant's ``total_increasing``).
When one goes back (a reset, a replaced meter, a 32-bit wrap) the drop is not
energy: it is recorded as an event and the running total continues from the
new value. The integrated power over the same reads is kept beside each
counter's total so an installer can see when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COUNTER_FIELDS = {"import_wh": 1.0, "export_wh": -1.0, "energy_wh": 1.0}
RESET_TOLERANCE_WH = 1.0  # float counters jitter by a fraction of a Wh


@dataclass(slots=True)
class CounterCheck:
    """Running, reset-proof totals of one device's energy counters."""

    last: dict[str, float] = field(default_factory=dict)
    counted_wh: dict[str, float] = field(default_factory=dict)
    integrated_wh: dict[str, float] = field(default_factory=dict)
    resets: int = 0
    _last_power: tuple[float, float] | None = None

    def update(self, reading: object, now: float) -> str | None:
        """Take one good reading; returns a message if a counter went back."""
        note = None
        power = getattr(reading, "power_w", None)
        dt_h = 0.0
        if self._last_power is not None:
            dt_h = max(now - self._last_power[1], 0.0) / 3600.0
        for name, sign in COUNTER_FIELDS.items():
            value = getattr(reading, name, None)
            if value is None:
                continue
            prev = self.last.get(name)
            self.last[name] = value
            if prev is None:
                self.counted_wh.setdefault(name, 0.0)
                self.integrated_wh.setdefault(name, 0.0)
                continue
            delta = value - prev
            if delta < -RESET_TOLERANCE_WH:
                self.resets += 1
                note = (f"{name} counter went back from {prev:.0f} to {value:.0f} Wh "
                        "(reset or replaced meter); the drop is not booked")
                delta = 0.0
            self.counted_wh[name] += max(delta, 0.0)
            if self._last_power is not None and dt_h > 0:
                self.integrated_wh[name] += max(sign * self._last_power[0], 0.0) * dt_h
        if power is not None:
            self._last_power = (float(power), now)
        return note

    def as_dict(self) -> dict[str, object]:
        """Totals since the controller started, for the devices view."""
        return {
            "counted_wh": {k: round(v, 1) for k, v in self.counted_wh.items()},
            "integrated_power_wh": {k: round(v, 1) for k, v in self.integrated_wh.items()},
            "counter_resets": self.resets,
        }
