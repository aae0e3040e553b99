"""The rolling plan's file beside the ledger: what must survive a restart.

``rolling-plan.json`` (owner-only, 0600, replaced atomically like the island plan) holds
the newest plan's content targets and when it was solved, the forecast it trusted (its
name, and the coop's PV and load per step), the cloudiness learned from the ledger and
the forecasts' recent skill. After a restart the
plan is followed again until it expires (:class:`~controller.planning.worker.PlanWorker`
drops targets older than ``expire_s``), and the cloudiness is used until it is older than
:data:`CLOUD_MAX_AGE_S`, so the controller does not run greedy for a day while it
relearns. A file written for other members, unreadable or of another version is ignored
(the plan starts afresh), never trusted in part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.files import write_private
from controller.planning.cloudiness import Cloudiness

FloatArray = NDArray[np.float64]
VERSION = 1
FILE_NAME = "rolling-plan.json"
#: A cloudiness learned longer ago than this is relearned before it is used.
CLOUD_MAX_AGE_S = 2 * 86400.0


def path_beside(ledger: Path) -> Path:
    """Where the file of the coop with this ledger lives."""
    return Path(ledger).parent / FILE_NAME


def save(path: Path, member_ids: list[str], saved_at: float, forecast: str,
         plan: tuple[float, FloatArray] | None, cloudiness: Cloudiness | None,
         skill: dict | None,
         coop_forecast: tuple[float, FloatArray, FloatArray] | None = None) -> None:
    """Write the file (atomically, 0600). ``coop_forecast``: (start, PV W, load W) per
    step, summed over members, as the plan trusted it."""
    body: dict = {"version": VERSION, "members": member_ids, "saved_at": saved_at,
                  "forecast": forecast, "skill": skill, "coop_forecast": None,
                  "cloudiness": None if cloudiness is None else cloudiness.as_dict(),
                  "plan": None}
    if plan is not None:
        solved_at, content = plan
        body["plan"] = {"solved_at": solved_at,
                        "stored_wh": np.where(np.isnan(content), None,
                                              np.round(content, 1)).tolist()}
    if coop_forecast is not None:
        start, pv, load = coop_forecast
        body["coop_forecast"] = {"start": start, "pv_w": np.round(pv, 1).tolist(),
                                 "load_w": np.round(load, 1).tolist()}
    write_private(path, json.dumps(body, separators=(",", ":")))


def load(path: Path, member_ids: list[str], now: float) -> dict | None:
    """The file's contents for this coop, with ``plan`` as (solved at, content),
    ``coop_forecast`` as (start, PV, load) and ``cloudiness`` as a :class:`Cloudiness`
    (None when too old); None without a usable file."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(body, dict) or body.get("version") != VERSION
            or body.get("members") != member_ids):
        return None
    try:
        plan = body.get("plan")
        if plan is not None:
            content = np.array(plan["stored_wh"], dtype=float)
            if content.ndim != 2 or content.shape[1] != len(member_ids):
                return None
            body["plan"] = (float(plan["solved_at"]), content)
        shown = body.get("coop_forecast")
        if shown is not None:
            body["coop_forecast"] = (float(shown["start"]), np.array(shown["pv_w"], dtype=float),
                                     np.array(shown["load_w"], dtype=float))
        cloud = body.get("cloudiness")
        if cloud is not None:
            learned = Cloudiness.from_dict(cloud)
            fresh = 0 <= now - learned.learned_at <= CLOUD_MAX_AGE_S
            body["cloudiness"] = learned if fresh and learned.recent.shape == (
                len(member_ids),) else None
    except (KeyError, TypeError, ValueError):
        return None
    return body
