"""The ``[forecast]`` table: which PV forecast the rolling plan trusts (model only).

::

    [forecast]
    provider = "auto"        # auto | clear-sky | history | open-meteo
    url = "https://api.open-meteo.com/v1/forecast"   # open-meteo only
    refresh_min = 60         # how often the weather service is asked
    timeout_s = 10

* ``auto``: ``clear-sky`` when ``[site]`` lists arrays, ``history`` otherwise;
* ``clear-sky``: pvlib's clear sky on the site's arrays × cloudiness learned from the
  ledger (:mod:`controller.planning.cloudiness`);
* ``history``: each member's PV at that time of day over the last week;
* ``open-meteo``: the Open-Meteo irradiance forecast on the site's arrays
  (:mod:`controller.planning.open_meteo`), clear sky × cloudiness while it cannot be had.

Members without an array always get the history forecast. Kept apart from
:mod:`controller.config` so the config can hold it without importing the planner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.config_network import Strict

#: The providers that need ``[site]`` arrays.
NEEDS_ARRAYS = ("clear-sky", "open-meteo")


class ForecastConfig(Strict):
    """The rolling plan's PV forecast."""

    provider: Literal["auto", "clear-sky", "history", "open-meteo"] = Field(
        "auto", description="auto: clear-sky with [site] arrays, else history")
    url: str = Field("https://api.open-meteo.com/v1/forecast", pattern=r"^https?://",
                     description="the weather service's forecast endpoint")
    refresh_min: float = Field(60.0, ge=5, le=1440, description="minutes between requests")
    timeout_s: float = Field(10.0, gt=0, le=120, description="seconds a request may take")
