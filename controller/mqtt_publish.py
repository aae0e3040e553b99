"""Publishes members' figures to MQTT, with Home Assistant MQTT discovery.

Topics (all retained, QoS 1; ``<prefix>`` is the configured topic prefix):

* ``<prefix>/status``: ``online`` / ``offline``. The broker publishes ``offline``
  as our last will if the connection dies without a clean disconnect; ``online``
  is published on every (re)connect and ``offline`` on a clean :meth:`stop`.
* ``<prefix>/members/<id>/state``: a member's cumulative energy figures (kWh,
  the keys of :func:`controller.accounts.running.member_figures`), plus ``provisional`` and
  ``self_sufficiency_pct``.
* ``<prefix>/members/<id>/live``: live power (W) and battery state of charge (%).

Everything of one member is under its own prefix ``<prefix>/members/<id>/``, and its
discovery under ``<discovery_prefix>/sensor/commonwatt_<id>/``, so a broker ACL can give
each household's Home Assistant its own member and the coop's totals and nothing else
(``commonwatt mqtt acl``, :mod:`controller.mqtt_acl`). The device's name is the member's
name only for a ``public = true`` member; the runtime passes the ledger's pseudonym for
the others, as the API shows them.
* ``<prefix>/coop/state``: the coop's cumulative figures, like a member's state.
* ``<discovery_prefix>/sensor/commonwatt_<id>/<figure>/config``: Home Assistant
  discovery (``<discovery_prefix>/<component>/<node_id>/<object_id>/config``),
  one per sensor; each member is one HA device, the coop another
  (``commonwatt_coop``).

Energy sensors are ``device_class: energy``, ``state_class: total_increasing`` and
``kWh``, so they can be picked in HA's Energy dashboard: import and export are gross
(``from_grid_kwh``, ``to_grid_kwh``, never netted, as the dashboard wants), and the
community share (``liberated_kwh``, ``from_peers_kwh``) has sensors of its own. The
battery's charge is ``state_class: measurement`` (a statistic). A member gets no sensor
it cannot have (no PV power without PV, no battery without a battery), so no entity
stays "unknown" forever. Home Assistant reads any
drop of a ``total_increasing`` sensor as a meter reset (a new meter cycle), so the
publisher never lets an energy figure go down; see :meth:`MqttPublisher.publish`.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.mqtt.access import ANONYMOUS, MqttAccess, unique_client_id

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"
QOS = 1

ENERGY_SENSORS: dict[str, str] = {
    "liberated_kwh": "Liberated energy",
    "from_peers_kwh": "From neighbours",
    "to_peers_kwh": "To neighbours",
    "from_grid_kwh": "From the grid",
    "to_grid_kwh": "To the grid",
    "from_federation_kwh": "From other coops",
    "served_kwh": "Energy used",
}
"""Figure key in the state JSON -> sensor name; all kWh, ``total_increasing``."""
FEDERATION_SENSOR = "from_federation_kwh"

LIVE_SENSORS: dict[str, tuple[str, str, str]] = {
    "pv_w": ("PV power", "power", "W"),
    "load_w": ("Load power", "power", "W"),
    "grid_w": ("Grid power", "power", "W"),  # import > 0, export < 0
    "battery_w": ("Battery power", "power", "W"),  # discharge > 0, charge < 0
    "soc_pct": ("Battery charge", "battery", "%"),
}
"""Key in the live JSON -> (sensor name, device class, unit); ``measurement``."""

#: Live sensors only a member with that kind of device has (others would stay unknown).
NEEDS_KIND: dict[str, str] = {"pv_w": "pv", "battery_w": "battery", "soc_pct": "battery"}

SELF_SUFFICIENCY = "self_sufficiency_pct"
COOP_ID = "coop"


def _sw_version() -> str:
    try:
        return importlib.metadata.version("commonwatt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class MqttPublisher:
    """A paho-mqtt 2.x client that keeps the coop's figures retained on a broker.

    ``members`` is a list of ``(member_id, display name)``. Ids must be valid HA
    discovery ids (``[A-Za-z0-9_-]+``, as the config enforces) and none may be
    ``coop``, which names the coop's own device. ``kinds`` maps a member to the kinds
    of device it has (``pv``, ``battery``, ...): its live sensors follow them; a member
    not in it (or ``kinds`` None) gets every sensor.
    """

    def __init__(
        self, host: str, port: int, prefix: str, members: list[tuple[str, str]],
        discovery_prefix: str = "homeassistant", username: str | None = None,
        password: str | None = None, access: MqttAccess = ANONYMOUS,
        kinds: dict[str, set[str]] | None = None, federated: bool = False,
    ) -> None:
        if any(member_id == COOP_ID for member_id, _ in members):
            raise ValueError(f"member id {COOP_ID!r} is reserved for the coop's HA device")
        self.host, self.port = host, port
        self.prefix = prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.members = list(members)
        self.kinds = kinds or {}
        #: Only a coop in a federation gets "From other coops": elsewhere it would stay 0.
        self.federated = federated
        self.status_topic = f"{self.prefix}/status"
        self.sw_version = _sw_version()
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}  # topic -> last payload, republished on reconnect
        self._high: dict[tuple[str, str], float] = {}  # (topic, figure) -> highest published
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=unique_client_id("commonwatt-figures"))
        access.apply(self.client)
        if username is not None:
            self.client.username_pw_set(username, password)
        # The will must be set before connecting: the broker stores it with the session.
        self.client.will_set(self.status_topic, OFFLINE, qos=QOS, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after a loss."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Publish ``offline``, disconnect cleanly and stop the network thread."""
        if self.client.is_connected():
            info = self.client.publish(self.status_topic, OFFLINE, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish %s offline: %s", self.status_topic, exc)
        self.client.disconnect()
        self.client.loop_stop()

    # -- topics and discovery ------------------------------------------------------

    def state_topic(self, member_id: str) -> str:
        """Topic holding one member's cumulative figures."""
        return f"{self.prefix}/members/{member_id}/state"

    def live_topic(self, member_id: str) -> str:
        """Topic holding one member's live power and state of charge."""
        return f"{self.prefix}/members/{member_id}/live"

    @property
    def coop_topic(self) -> str:
        """Topic holding the coop's cumulative figures."""
        return f"{self.prefix}/coop/state"

    def discovery(self) -> dict[str, dict[str, Any]]:
        """Every discovery config: topic -> payload (published retained on connect)."""
        out: dict[str, dict[str, Any]] = {}
        devices = [(m, name, "Coop member", self.state_topic(m), self.live_topic(m))
                   for m, name in self.members]
        devices.append((COOP_ID, "Commonwatt coop", "Coop", self.coop_topic, None))
        for node, name, model, state, live in devices:
            device = {
                "identifiers": [f"commonwatt_{node}"], "name": name,
                "manufacturer": "Commonwatt", "model": model, "sw_version": self.sw_version,
            }
            sensors: list[tuple[str, str, str, dict[str, str]]] = [
                (fig, label, state, {"device_class": "energy", "state_class": "total_increasing",
                                     "unit_of_measurement": "kWh"})
                for fig, label in ENERGY_SENSORS.items()
                if fig != FEDERATION_SENSOR or self.federated
            ]
            sensors.append((SELF_SUFFICIENCY, "Self-sufficiency", state,
                            {"state_class": "measurement", "unit_of_measurement": "%"}))
            if live is not None:
                sensors += [
                    (key, label, live, {"device_class": dc, "state_class": "measurement",
                                        "unit_of_measurement": unit})
                    for key, (label, dc, unit) in LIVE_SENSORS.items() if self.has(node, key)
                ]
            for figure, label, topic, classes in sensors:
                out[f"{self.discovery_prefix}/sensor/commonwatt_{node}/{figure}/config"] = {
                    "name": label,
                    "unique_id": f"commonwatt_{node}_{figure}",
                    "state_topic": topic,
                    # A JSON null renders as "None", which HA's MQTT sensor shows as unknown.
                    "value_template": f"{{{{ value_json.{figure} }}}}",
                    **classes,
                    "availability_topic": self.status_topic,
                    "payload_available": ONLINE,
                    "payload_not_available": OFFLINE,
                    "device": device,
                    "origin": {"name": "Commonwatt", "sw_version": self.sw_version},
                }
        return out

    def has(self, member_id: str, key: str) -> bool:
        """Whether ``member_id`` gets the live sensor ``key`` (its devices allow it)."""
        kinds = self.kinds.get(member_id)
        return kinds is None or key not in NEEDS_KIND or NEEDS_KIND[key] in kinds

    # -- publishing ----------------------------------------------------------------

    def publish(self, per_member: dict[str, dict[str, Any]], coop: dict[str, Any],
                provisional: bool = False) -> None:
        """Publish the latest cumulative figures (retained).

        ``provisional`` says the figures include an open, not yet committed
        settlement interval; a figures dict's own ``"provisional"`` key wins.

        Every ``*_kwh`` figure is a running total. Provisional figures can be
        1 Wh above what the ledger later commits (rounding of the open interval),
        and Home Assistant reads any drop of a ``total_increasing`` sensor as a
        meter reset, which corrupts its long-term statistics and the Energy
        dashboard. So, per topic and figure, the publisher remembers the highest
        value it has published and never publishes a lower one; the committed
        figures catch up within an interval. This memory lives in this object
        only: a restart (the one real reset) starts afresh.
        """
        with self._lock:
            for member_id, figures in per_member.items():
                self._publish_state(self.state_topic(member_id), figures, provisional)
            self._publish_state(self.coop_topic, coop, provisional)

    def publish_live(self, per_member: dict[str, dict[str, float | None]]) -> None:
        """Publish live ``pv_w``, ``load_w``, ``grid_w``, ``battery_w``, ``soc_pct``.

        A missing or None value is published as JSON null (HA shows unknown).
        """
        with self._lock:
            for member_id, values in per_member.items():
                payload = {key: values.get(key) for key in LIVE_SENSORS
                           if self.has(member_id, key)}
                self._send(self.live_topic(member_id), json.dumps(payload))

    def _publish_state(self, topic: str, figures: dict[str, Any], provisional: bool) -> None:
        """Clamp running totals to the highest published, then send (lock held)."""
        payload = dict(figures)
        for key, value in figures.items():
            if key.endswith("_kwh") and isinstance(value, int | float):
                high = max(value, self._high.get((topic, key), value))
                self._high[(topic, key)] = high
                payload[key] = high
        payload["provisional"] = bool(figures.get("provisional", provisional))
        ratio = figures.get("self_sufficiency")
        payload[SELF_SUFFICIENCY] = None if ratio is None else round(ratio * 100, 2)
        self._send(topic, json.dumps(payload))

    def _send(self, topic: str, payload: str) -> None:
        """Remember and, when connected, publish retained (lock held).

        While disconnected nothing is queued: on reconnect the latest payload of
        every topic is republished instead, so a long outage costs no memory.
        """
        self._last[topic] = payload
        if self.client.is_connected():
            self.client.publish(topic, payload, qos=QOS, retain=True)

    # -- paho callbacks (network thread) --------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused: %s", self.host, self.port, reason)
            return
        with self._lock:
            for topic, config in self.discovery().items():
                client.publish(topic, json.dumps(config), qos=QOS, retain=True)
            for topic, payload in self._last.items():
                client.publish(topic, payload, qos=QOS, retain=True)
            client.publish(self.status_topic, ONLINE, qos=QOS, retain=True)
        log.info("MQTT connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        if reason.is_failure:
            log.warning("MQTT connection to %s:%s lost: %s", self.host, self.port, reason)
