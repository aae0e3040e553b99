"""A simulated cooperative: every household's devices served as SunSpec over Modbus TCP.

Each household gets one Modbus TCP port on 127.0.0.1 (like a household
gateway) with three unit ids behind it:

* unit 1: PV inverter, SunSpec models 1 + 103 + 120 (nameplate) + 123
  (immediate controls): a ``WMaxLimPct`` limit caps the simulated PV at
  that share of ``WRtg`` until ``WMaxLimPct_RvrtTms`` runs out on the
  simulated clock, then the inverter sets ``WMaxLim_Ena`` back to 0;
* unit 2: grid-connection meter, models 1 + 203 (import > 0);
* unit 3: battery, models 1 + 124 (control) + 802 (state), when it has one.

``grid_connected`` is the coop's breaker at the point of common coupling:
opened, the coop is an island (see :mod:`simulators.household`) and the
grid-forming battery reports it in SunSpec 701 ``ConnSt``. Events can be
injected: clouds (:meth:`HouseholdPhysics.add_cloud` on ``physics``) and a
device that drops out from a time on (:meth:`SimulatedCoop.add_dropout`: it
stops answering Modbus, through :class:`~simulators.modbus_server.Fault`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass

import numpy as np

from devices.mqtt.access import ANONYMOUS, MqttAccess
from devices.sunspec.adapters import UNDER_FREQUENCY_BIT
from simulators.clock import SimClock
from simulators.household import HouseholdPhysics, HouseholdSpec
from simulators.modbus_server import Fault, SimulatedModbusServer
from simulators.mqtt_devices import SimulatedMqttDevice
from simulators.sunspec_image import SunSpecImage

#: A smart plug reports at least this often (wall seconds), and whenever it changes.
PLUG_REPORT_S = 0.5
#: The grid-former's UNDER_FREQUENCY alarm stays up this long after the island last
#: dropped load, simulated seconds.
ALARM_HOLD_S = 60.0
#: Dropped load below this (W) is rounding, not an overload.
UNSERVED_TOL_W = 1.0

INVERTER_UNIT, METER_UNIT, BATTERY_UNIT = 1, 2, 3
#: SunSpec 103 St values: producing at the maximum power point, or throttled.
ST_MPPT, ST_THROTTLED = 4, 5


def plug_topic(member_id: str) -> str:
    """The MQTT base topic of ``member_id``'s simulated smart plug."""
    return f"plug-{member_id}"


def contactor_topic(member_id: str) -> str:
    """The MQTT base topic of ``member_id``'s simulated household contactor."""
    return f"contactor-{member_id}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _common(spec: HouseholdSpec, model: str, serial: str) -> tuple[int, dict]:
    return 1, {"Mn": "Commonwatt Sim", "Md": model, "Vr": "0.1", "SN": serial, "DA": 1}


def inverter_image(spec: HouseholdSpec) -> SunSpecImage:
    """SunSpec inverter (1 + 103 + 120 + 123) of one household; ``WRtg`` is its kWp."""
    rated, rated_sf = round(spec.pv_kwp * 1000), 0
    while rated > 0xFFFE:
        rated, rated_sf = round(rated / 10), rated_sf + 1
    return SunSpecImage([
        _common(spec, "PV-3P", f"INV-{spec.member_id}"),
        (103, {"W_SF": 0, "WH_SF": 0, "Hz_SF": -2, "Hz": 5000, "St": ST_MPPT, "A_SF": -2,
               "V_SF": -1, "VA_SF": 0, "VAr_SF": 0, "PF_SF": -2, "DCA_SF": -2,
               "DCV_SF": -1, "DCW_SF": 0, "Tmp_SF": -1}),
        (120, {"DERTyp": 4, "WRtg": rated, "WRtg_SF": rated_sf}),
        (123, {"Conn": 1, "WMaxLimPct_SF": -2, "WMaxLimPct": 10000, "WMaxLimPct_WinTms": 0,
               "WMaxLimPct_RvrtTms": 0, "WMaxLimPct_RmpTms": 0, "WMaxLim_Ena": 0}),
    ])


def meter_image(spec: HouseholdSpec) -> SunSpecImage:
    """SunSpec meter (1 + 203) at one household's grid connection."""
    return SunSpecImage([
        _common(spec, "Meter-3P", f"MTR-{spec.member_id}"),
        (203, {"W_SF": 0, "TotWh_SF": 0, "Hz_SF": -2, "Hz": 5000, "A_SF": -2, "V_SF": -1,
               "PhVphA": 2300, "PhV": 2300,
               "VA_SF": 0, "VAR_SF": 0, "PF_SF": -2, "TotVAh_SF": 0, "TotVArh_SF": 0}),
    ])


def battery_image(spec: HouseholdSpec) -> SunSpecImage:
    """SunSpec storage (1 + 124 + 802) of one household's battery; a grid-forming one
    also serves 701, whose ``ConnSt`` says whether it is connected to the utility."""
    extra = [(701, {"ConnSt": 1, "W_SF": 0, "Alrm": 0})] if spec.grid_forming else []
    return SunSpecImage([
        _common(spec, "Battery", f"BAT-{spec.member_id}"),
        (124, {"WChaMax_SF": 0, "WChaDisChaGra_SF": 0, "VAChaMax_SF": 0, "MinRsvPct_SF": -1,
               "ChaState_SF": -1, "StorAval_SF": -1, "InBatV_SF": -1, "InOutWRte_SF": -2,
               "WChaMax": round(spec.battery_max_w), "StorCtl_Mod": 0, "InWRte": 0,
               "OutWRte": 0, "InOutWRte_RvrtTms": 0, "MinRsvPct": round(spec.soc_min_pct * 10)}),
        (802, {"AHRtg_SF": 0, "WHRtg_SF": 0, "WChaDisChaMax_SF": 0, "DisChaRte_SF": 0,
               "SoC_SF": -1, "DoD_SF": 0, "SoH_SF": 0, "V_SF": -1, "CellV_SF": -3, "A_SF": -1,
               "AMax_SF": 0, "W_SF": 0, "WHRtg": round(spec.battery_wh),
               "WChaRteMax": round(spec.battery_max_w),
               "WDisChaRteMax": round(spec.battery_max_w),
               "SoCMin": round(spec.soc_min_pct * 10), "SoCMax": 1000, "SoH": 100}),
        *extra,
    ])


@dataclass(slots=True)
class SimulatedHousehold:
    """The served devices of one household."""

    spec: HouseholdSpec
    index: int
    server: SimulatedModbusServer
    inverter: SunSpecImage
    meter: SunSpecImage
    battery: SunSpecImage | None


class SimulatedCoop:
    """Households with physics, served over Modbus TCP, stepped on a :class:`SimClock`."""

    def __init__(
        self, specs: list[HouseholdSpec], clock: SimClock, host: str = "127.0.0.1",
        day: int | None = None, mqtt: tuple[str, int] | None = None,
        mqtt_access: MqttAccess = ANONYMOUS,
    ) -> None:
        self.clock = clock
        #: The broker the smart plugs (households with ``plug_w``) publish to; None: no plugs.
        self.mqtt = mqtt
        self.mqtt_access = mqtt_access
        #: Household index → its simulated Shelly Plug, once :meth:`start` connected them.
        self.plugs: dict[int, SimulatedMqttDevice] = {}
        #: Household index → its simulated household contactor (a relay over MQTT).
        self.contactors: dict[int, SimulatedMqttDevice] = {}
        self._plug_sent: dict[tuple[str, int], tuple[tuple[bool, int], float]] = {}
        self._overloaded_at = -float("inf")  # simulated time the island last dropped load
        self.host = host
        self.physics = HouseholdPhysics(specs, day=day)
        self.households: list[SimulatedHousehold] = []
        for index, spec in enumerate(specs):
            images = {INVERTER_UNIT: inverter_image(spec), METER_UNIT: meter_image(spec)}
            if spec.battery_wh > 0:
                images[BATTERY_UNIT] = battery_image(spec)
            server = SimulatedModbusServer(free_port(host), images, host=host)
            household = SimulatedHousehold(
                spec, index, server, images[INVERTER_UNIT], images[METER_UNIT],
                images.get(BATTERY_UNIT),
            )
            server.on_write = self._write_hook(household)
            self.households.append(household)
        self._ticker: asyncio.Task[None] | None = None
        #: (time, household index, unit, fault): devices that fail from a time on.
        self.dropouts: list[tuple[float, int, int, Fault]] = []

    @property
    def grid_connected(self) -> bool:
        """Whether the coop's breaker at the point of common coupling is closed."""
        return self.physics.grid_connected

    @grid_connected.setter
    def grid_connected(self, closed: bool) -> None:
        self.physics.grid_connected = bool(closed)

    def add_dropout(self, index: int, at_s: float, unit: int = BATTERY_UNIT,
                    fault: Fault = Fault.TIMEOUT) -> None:
        """From simulated time ``at_s`` on, household ``index``'s ``unit`` shows ``fault``
        (by default it stops answering); applied by :meth:`step`. A battery that no
        longer hears its setpoint idles when the setpoint expires, like a real one."""
        if unit not in self.households[index].server.images:
            raise ValueError(f"household {index} has no unit {unit}")
        self.dropouts.append((at_s, index, unit, fault))

    def _write_hook(self, household: SimulatedHousehold):  # noqa: ANN202
        def on_write(unit: int, offset: int, values: list[int]) -> None:
            # The physics integrates each step at the power at its end: without this, a
            # setpoint written mid-step would count from the step's start, before it was
            # written (at 2000x a step spans a minute). The registers are refreshed at the
            # next step, as before.
            if unit in (INVERTER_UNIT, BATTERY_UNIT):
                self.physics.advance_to(self.clock.now())
            if unit == INVERTER_UNIT and household.inverter.model_at(offset) == 123:
                self._apply_pv_limit(household.index, household.inverter)
                return
            image = household.battery
            if unit != BATTERY_UNIT or image is None or image.model_at(offset) != 124:
                return
            self._apply_battery_command(household.index, image)

        return on_write

    def _apply_pv_limit(self, index: int, image: SunSpecImage) -> None:
        """Model 123 as the inverter reads it: enabled → cap at WMaxLimPct % of WRtg,
        reverting after WMaxLimPct_RvrtTms (0 = never); disabled → no cap."""
        if image.get_raw(123, "WMaxLim_Ena") != 1:
            self.physics.limit_pv(index, None, -float("inf"))
            return
        limit_w = image.get(123, "WMaxLimPct") / 100.0 * image.get(120, "WRtg")
        revert_s = image.get_raw(123, "WMaxLimPct_RvrtTms")
        expiry = self.clock.now() + revert_s if revert_s > 0 else float("inf")
        self.physics.limit_pv(index, limit_w, expiry)

    def _apply_battery_command(self, index: int, image: SunSpecImage) -> None:
        # Model 124: a positive rate caps, a negative one forces the opposite direction
        # (InWRte < 0 with bit 0: discharge; OutWRte < 0 with bit 1: charge).
        rating = image.get(124, "WChaMax")
        mode = int(image.get_raw(124, "StorCtl_Mod"))
        forced_discharge = -min(image.get(124, "InWRte"), 0.0) if mode & 0b01 else 0.0
        forced_charge = -min(image.get(124, "OutWRte"), 0.0) if mode & 0b10 else 0.0
        power = (forced_discharge - forced_charge) / 100.0 * rating
        revert_s = image.get_raw(124, "InOutWRte_RvrtTms")
        expiry = self.clock.now() + revert_s if revert_s > 0 else float("inf")
        self.physics.command(index, power, expiry)

    async def start(self) -> None:
        """Start every household's server and plug, and publish the first values."""
        if self.mqtt is not None:
            host, port = self.mqtt
            for h in self.households:
                # Off the loop: a device waits for its broker, which may be on this loop.
                if h.spec.plug_w > 0:
                    self.plugs[h.index] = await asyncio.to_thread(
                        SimulatedMqttDevice, "shelly-plug", plug_topic(h.spec.member_id), port,
                        host, self.clock, access=self.mqtt_access)
                if h.spec.contactor:
                    self.contactors[h.index] = await asyncio.to_thread(
                        SimulatedMqttDevice, "shelly-plug", contactor_topic(h.spec.member_id),
                        port, host, self.clock, access=self.mqtt_access)
        self.step()
        for household in self.households:
            await household.server.start()

    async def stop(self) -> None:
        """Stop the ticker and every server."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for household in self.households:
            await household.server.stop()
        for device in (*self.plugs.values(), *self.contactors.values()):
            device.close()
        self.plugs.clear()
        self.contactors.clear()

    def run_in_background(self, interval_s: float = 0.1) -> None:
        """Advance the physics on the clock every ``interval_s`` wall seconds."""
        async def tick() -> None:
            while True:
                self.step()
                await asyncio.sleep(interval_s)

        self._ticker = asyncio.get_running_loop().create_task(tick())

    def step(self) -> None:
        """Advance the physics to the clock's time and refresh every register image."""
        t = self.clock.now()
        for at_s, index, unit, fault in self.dropouts:
            if t >= at_s:
                self.households[index].server.faults[unit] = fault
        physics = self.physics
        # Up to now with the relays as they were: one switched since the last step counts
        # from when the step sees it, not from the step's start (a minute at 2000x).
        physics.advance_to(t)
        for i, plug in self.plugs.items():
            plug.tick(wait=False)
            physics.plug_on[i] = bool(plug.values["on"])
        for i, relay in self.contactors.items():
            relay.tick(wait=False)
            physics.house_on[i] = bool(relay.values["on"])
        physics.advance_to(t)  # the instant's powers with the relays as they are now
        self._publish_plugs(t)
        pv_w, meter_w, soc = physics.pv_out_w(t), physics.meter_w(t), physics.soc_pct()
        limited = physics.pv_limited(t)
        for h in self.households:
            i = h.index
            if not limited[i] and h.inverter.get_raw(123, "WMaxLim_Ena") == 1:
                h.inverter.set_raw(123, "WMaxLim_Ena", 0)  # the revert timer ran out
            h.inverter.set_raw(103, "St", ST_THROTTLED if limited[i] else ST_MPPT)
            h.inverter.set(103, "W", pv_w[i])
            h.inverter.set(103, "Hz", physics.frequency_hz)  # what it derates on
            h.meter.set(203, "Hz", physics.frequency_hz)
            h.inverter.set(103, "WH", max(physics.pv_wh[i], 1.0))
            h.meter.set(203, "W", meter_w[i])
            h.meter.set(203, "TotWhImp", max(physics.import_wh[i], 1.0))
            h.meter.set(203, "TotWhExp", max(physics.export_wh[i], 1.0))
            if h.battery is not None:
                self._expire(h, t)
                h.battery.set(802, "SoC", soc[i])
                h.battery.set(802, "W", physics.battery_w[i])
                h.battery.set(124, "ChaState", soc[i])
                if h.spec.grid_forming:
                    h.battery.set_raw(701, "ConnSt", 1 if self.grid_connected else 0)
                    # Load dropped because the grid-former is at its limit: its frequency sags,
                    # and the alarm stays up ALARM_HOLD_S after (a poll must not miss it).
                    if physics.unserved_w.sum() > UNSERVED_TOL_W:
                        self._overloaded_at = t
                    h.battery.set_raw(701, "Alrm", UNDER_FREQUENCY_BIT
                                      if t - self._overloaded_at <= ALARM_HOLD_S else 0)

    def _publish_plugs(self, t: float) -> None:
        """Each plug's and contactor's status, on a change of relay or power and at least
        every :data:`PLUG_REPORT_S` wall seconds (a real one reports on change and
        periodically). A contactor measures the whole house."""
        if not self.plugs and not self.contactors:
            return
        physics = self.physics
        plug_w = np.where(physics.plug_on & physics.house_on, physics.appliance_w(t), 0.0)
        house_w = physics.load_w(t) - physics.unserved_w
        devices = [(("plug", i), d, plug_w[i], physics.plug_wh[i]) for i, d in self.plugs.items()]
        devices += [(("house", i), d, house_w[i], physics.house_wh[i])
                    for i, d in self.contactors.items()]
        wall = time.monotonic()
        for key, device, power, energy in devices:
            state = (bool(device.values["on"]), round(float(power)))
            last = self._plug_sent.get(key)
            if last is None or last[0] != state or wall - last[1] >= PLUG_REPORT_S:
                device.publish(wait=False, power_w=float(power), energy_wh=float(energy))
                self._plug_sent[key] = (state, wall)

    def _expire(self, household: SimulatedHousehold, t: float) -> None:
        """A setpoint that was not refreshed reverts: rates back to 0, like a real watchdog."""
        image = household.battery
        if image is not None and self.physics.setpoint_expiry_s[household.index] < t:
            for name in ("InWRte", "OutWRte"):
                image.set_raw(124, name, 0)

    def endpoint(self, member_id: str) -> tuple[str, int]:
        """Host and port serving ``member_id``'s devices."""
        for h in self.households:
            if h.spec.member_id == member_id:
                return h.server.host, h.server.port
        raise KeyError(member_id)


