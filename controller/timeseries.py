"""Per-cycle time series to an InfluxDB v2 write API (InfluxDB, or VictoriaMetrics).

Each committed interval writes one point per member (measurement
``commonwatt_member``: powers, SoC, and the interval's booked Wh) with the
interval's end as its time. Writing is best effort: a time-series server that
is down is logged and never stops the cycle or the ledger, which stays the
record of truth.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from controller.cycle import CycleReport
from dispatch.rounding import LIBERATED_FIELDS

log = logging.getLogger(__name__)
BOOKED = ("own_pv_used", "from_peers", "to_peers", "from_grid", "to_grid", "shed", "curtailed")


def member_points(report: CycleReport) -> list[Point]:
    """One point per member for a committed interval (NaN values are left out)."""
    image = report.image
    out = []
    for i, member in enumerate(image.member_ids):
        point = Point("commonwatt_member").tag("member", member).time(
            int(report.end_ts * 1e9), WritePrecision.NS)
        fields = {"pv_w": image.pv_w[i], "meter_w": image.meter_w[i],
                  "battery_w": image.battery_w[i], "soc_pct": image.soc_pct[i],
                  "setpoint_w": report.setpoints_w[i]}
        for name, value in fields.items():
            if math.isfinite(float(value)):
                point = point.field(name, float(value))
        if report.booked is not None:
            booked = report.booked
            for name in BOOKED:
                point = point.field(f"{name}_wh", int(booked[name][i]))
            point = point.field("liberated_wh", sum(int(booked[n][i]) for n in LIBERATED_FIELDS))
        point = point.field("valid", bool(np.asarray(image.valid)[i]))
        out.append(point)
    return out


class TimeSeriesWriter:
    """Writes each cycle's points; failures are counted and logged, never raised."""

    def __init__(self, url: str, bucket: str, org: str = "commonwatt", token: str = "") -> None:
        self.bucket, self.org = bucket, org
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=2_000)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self.failures = 0

    def write(self, report: CycleReport) -> bool:
        """Write one cycle; ``False`` if the server did not take it."""
        try:
            self._write.write(self.bucket, self.org, member_points(report))
        except Exception as exc:  # noqa: BLE001 - the time series is never worth a cycle
            self.failures += 1
            log.warning("time-series write failed (%d so far): %s", self.failures, exc)
            return False
        return True

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
