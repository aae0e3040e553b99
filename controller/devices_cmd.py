"""``commonwatt devices``: the health of every configured device, from the running controller.

Health is live state (last good read, error counts, back-off), so it is read
from the controller's API rather than by polling the devices a second time,
which single-client inverters would refuse.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def fetch_devices(base_url: str, timeout_s: float = 5.0,
                  token: str | None = None) -> list[dict[str, Any]]:
    """``GET /api/v1/devices`` of a running controller, with an installer or coordinator
    ``token`` (the route refuses the public)."""
    url = base_url.rstrip("/") + "/api/v1/devices"
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return list(json.load(response))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise ConnectionError(f"the controller at {url} refused: {exc.code} {detail} (set "
                              "COMMONWATT_TOKEN to an installer token)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"no controller answered at {url}: {reason}") from None


def _age(value: Any) -> str:
    return "never" if value is None else f"{value:.1f} s ago"


def format_devices(devices: list[dict[str, Any]]) -> str:
    """One line per device, then its last error or event."""
    header = ("device", "state", "last good", "errors", "backoff")
    lines = ["{:<16} {:<8} {:<12} {:>6} {:>8}  endpoint".format(*header)]
    for d in devices:
        lines.append(
            f"{d['name']:<16} {d['state']:<8} {_age(d['last_good_age_s']):<12} "
            f"{d['errors_total']:>6} {d['backoff_remaining_s']:>7.1f}s  {d['endpoint']}"
        )
        if d.get("last_error") and d["state"] != "ok":
            lines.append(f"    last error: {d['last_error']}")
        if d.get("last_event"):
            lines.append(f"    note: {d['last_event']}")
        if d.get("messages_refused"):
            lines.append(f"    {d['messages_refused']:,} MQTT messages not read (over a size, "
                         "nesting, rate or time limit, or malformed): see the controller's log")
        for direction, drift in (d.get("drift") or {}).items():
            if drift.get("flagged"):
                lines.append(f"    DRIFT {direction}: meter counted {drift['metered_kwh']} kWh, "
                             f"ledger booked {drift['booked_kwh']} kWh over 24 h "
                             f"(limit {drift['limit_kwh']} kWh): check the meter's wiring, "
                             "sign and scale")
        flagged = d.get("counters_vs_power")
        if flagged:
            lines.append(f"    COUNTERS vs POWER: flagged in {flagged['intervals']} settled "
                         f"interval(s) of the ledger's last 24 h; the counters less the "
                         f"measured power: import {flagged['import_drift_wh']:+d} Wh, export "
                         f"{flagged['export_drift_wh']:+d} Wh: check the meter's CT, sign "
                         "and counter scale")
    ok = sum(d["state"] == "ok" for d in devices)
    lines.append(f"{ok} of {len(devices)} devices ok")
    return "\n".join(lines)
