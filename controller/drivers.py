"""Builds the driver for each configured device: SunSpec, a vendor template, or MQTT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.config import CoopConfig, DeviceConfig
from devices.modbus.transport import LinkPool
from devices.mqtt.formats import FORMATS, json_path_format
from devices.mqtt.hub import MqttDevice, MqttHub
from devices.sunspec.adapters import SunSpecBattery, SunSpecInverter, SunSpecMeter
from devices.sunspec.client import SunSpecClient
from devices.templates.driver import TemplateDevice
from devices.templates.schema import template

SUNSPEC_DRIVERS = {"meter": SunSpecMeter, "pv": SunSpecInverter, "battery": SunSpecBattery}
READERS = {"meter": "read_meter", "pv": "read_pv", "battery": "read_battery",
           "load": "read_load"}


@dataclass
class DriverFactory:
    """Owns the shared connections (one Modbus link per host:port, one MQTT hub)."""

    config: CoopConfig
    pool: LinkPool = field(init=False)
    hub: MqttHub | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.pool = LinkPool(self.config.controller.request_timeout_s)

    def build(self, dev: DeviceConfig) -> tuple[Any, SunSpecClient | None]:
        """The driver for ``dev`` and, for SunSpec, its client (to forget the map on errors)."""
        if dev.protocol == "mqtt":
            fmt = (json_path_format(dev.paths, dev.scales) if dev.family == "json"
                   else FORMATS[dev.family])
            return MqttDevice(self._hub(), fmt, str(dev.topic), dev.fresh_s), None
        assert dev.host is not None and dev.port is not None
        link = self.pool.get(dev.host, dev.port)
        if dev.family == "sunspec":
            client = SunSpecClient(link, dev.unit if dev.unit is not None else 1)
            return SUNSPEC_DRIVERS[dev.kind](client), client
        return TemplateDevice(link, template(dev.family), dev.kind, dev.unit, dev.params), None

    def _hub(self) -> MqttHub:
        if self.hub is None:
            broker = self.config.mqtt
            assert broker is not None  # the config refuses MQTT devices without a broker
            # The hub's own unique client id: no other Commonwatt client (``read``,
            # a second tool) can take over its broker session.
            self.hub = MqttHub(broker.host, broker.port, access=broker.access())
        return self.hub

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()
        if self.hub is not None:
            self.hub.stop()
