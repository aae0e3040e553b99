"""Publishes members' running figures to MQTT, with Home Assistant discovery.

Topics (retained, JSON):

* ``<prefix>/members/<id>/state``: that member's cumulative figures (kWh);
* ``<prefix>/coop/state``: the coop's cumulative figures;
* ``homeassistant/sensor/commonwatt_<id>_<figure>/config``: discovery, so a
  household's Home Assistant shows its liberated kWh as an energy sensor
  (``state_class: total_increasing``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

HA_FIGURES = {
    "liberated_kwh": "Liberated energy",
    "served_kwh": "Energy used",
    "from_peers_kwh": "From neighbours",
    "to_peers_kwh": "To neighbours",
    "from_grid_kwh": "From the grid",
}


class MqttPublisher:
    """A paho-mqtt 2.x client that keeps members' figures retained on the broker."""

    def __init__(self, host: str, port: int, prefix: str, members: list[tuple[str, str]]) -> None:
        self.prefix = prefix.rstrip("/")
        self.members = members
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"commonwatt-{os.getpid()}"
        )
        self.client.on_connect = self._on_connect
        self.host, self.port = host, port

    def start(self) -> None:
        """Connect in the background; reconnects on its own."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused: %s", self.host, self.port, reason)
            return
        for member_id, name in self.members:
            for figure, label in HA_FIGURES.items():
                unique = f"commonwatt_{member_id}_{figure}"
                config = {
                    "name": label,
                    "unique_id": unique,
                    "state_topic": self.state_topic(member_id),
                    "value_template": f"{{{{ value_json.{figure} }}}}",
                    "unit_of_measurement": "kWh",
                    "device_class": "energy",
                    "state_class": "total_increasing",
                    "device": {"identifiers": [f"commonwatt_{member_id}"], "name": name,
                               "manufacturer": "Commonwatt"},
                }
                client.publish(f"homeassistant/sensor/{unique}/config", json.dumps(config),
                               qos=1, retain=True)

    def state_topic(self, member_id: str) -> str:
        """Topic holding one member's figures."""
        return f"{self.prefix}/members/{member_id}/state"

    def publish(self, per_member: dict[str, dict[str, Any]], coop: dict[str, Any]) -> None:
        """Publish the latest cumulative figures (retained)."""
        for member_id, figures in per_member.items():
            self.client.publish(self.state_topic(member_id), json.dumps(figures), qos=0,
                                retain=True)
        self.client.publish(f"{self.prefix}/coop/state", json.dumps(coop), qos=0, retain=True)
