"""The agent's MQTT side: numbered readings out, in order, until acknowledged; commands in.

A reading is published (QoS 1) only while connected; the rest wait in the
:class:`~controller.agent.spool.DiskSpool`. On every (re)connect everything
unacknowledged is published again from the oldest, so the coop may see a
reading twice (it books by number, once) but never loses one and never sees
them out of order after a gap. A reading leaves the spool on its PUBACK.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.agent.config import AgentConfig
from controller.agent.spool import DiskSpool

log = logging.getLogger(__name__)
#: At most this many readings in flight at once (the rest go out as acks come back).
MAX_IN_FLIGHT = 100


class AgentLink:
    """One connection to the coop broker."""

    def __init__(self, config: AgentConfig, spool: DiskSpool,
                 on_command: Callable[[dict], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.spool, self.on_command, self.clock = config, spool, on_command, clock
        self.connected = threading.Event()
        self.last_heard: float | None = None
        self.published = 0
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # mid → seq
        self._sent_up_to = 0  # highest seq published on this connection
        agent = config.agent
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"agent-{agent.coop}-{agent.member}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)

    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        host, port = self.config.agent.host_port
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: object, properties: object = None) -> None:
        if getattr(reason_code, "is_failure", False):
            return
        client.subscribe([(self.config.topic("commands"), 1),
                          (f"coop/{self.config.agent.coop}/heartbeat", 0)])
        with self._lock:
            self._in_flight.clear()
            self._sent_up_to = 0  # all that is unacknowledged goes out again, in order
        self.connected.set()
        self.send_pending()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object = None) -> None:
        self.connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: object = None, properties: object = None) -> None:
        with self._lock:
            seq = self._in_flight.pop(mid, None)
            if seq is not None:
                self.spool.ack(seq)
        self.send_pending()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.last_heard = self.clock()
        if not msg.topic.endswith("/commands"):
            return  # a heartbeat: the coop is alive
        try:
            command = json.loads(msg.payload)
            if not isinstance(command, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            log.warning("agent: command on %s ignored: %s", msg.topic, exc)
            return
        self.on_command(command)

    def send_pending(self) -> None:
        """Publish unacknowledged readings in order, up to :data:`MAX_IN_FLIGHT` at once."""
        if not self.connected.is_set():
            return
        topic = self.config.topic("readings")
        with self._lock:
            room = MAX_IN_FLIGHT - len(self._in_flight)
            if room <= 0:
                return
            for seq, payload in self.spool.pending(limit=room + len(self._in_flight)):
                if seq <= self._sent_up_to:
                    continue
                info = self._client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # the connection dropped: all goes out again on reconnect
                self._in_flight[info.mid] = seq
                self._sent_up_to = seq
                self.published += 1

    def publish_live(self, kind: str, values: dict[str, float | None]) -> None:
        """The newest values of one device (QoS 0, not retained: stale ones never replay)."""
        if self.connected.is_set():
            self._client.publish(self.config.topic(f"live/{kind}"), json.dumps(values), qos=0)
