"""Time series to an InfluxDB v2 write API (InfluxDB 2, or VictoriaMetrics), never losing a point.

Points are built as line protocol by :mod:`controller.timeseries.points`,
spooled on disk by :mod:`controller.timeseries.spool` and sent in the
background, oldest first, by :class:`TimeSeriesWriter`. The ledger stays the
record of truth; the time series is for dashboards.
"""

from controller.timeseries.points import interval_points, live_points
from controller.timeseries.writer import TimeSeriesWriter

__all__ = ["TimeSeriesWriter", "interval_points", "live_points"]
