"""The agent's MQTT side: numbered readings out, in order, until booked; commands in.

A reading is published (QoS 1) only while connected; the rest wait in the
:class:`~controller.agent.spool.DiskSpool`. The coop's inbox answers on
``booked`` (retained) with the highest number up to which it booked every
reading; only then does a reading leave the spool. On every (re)connect, and
whenever the coop has not moved ``booked`` for ``resend_after_s`` while
readings wait, everything not booked is published again from the oldest: the
coop may see a reading twice (it books by number, once) but never loses one,
whatever a broker or bridge dropped.
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
from devices.mqtt.access import unique_client_id
from devices.mqtt.guard import DEFAULT_LIMITS, check_size_and_depth

log = logging.getLogger(__name__)
#: At most this many readings sent and not yet booked by the coop: the rest go out as
#: the coop confirms (end-to-end flow control, so a long backlog never floods a broker).
WINDOW = 2000


class AgentLink:
    """One connection to the coop broker."""

    def __init__(self, config: AgentConfig, spool: DiskSpool,
                 on_command: Callable[[dict], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.spool, self.on_command, self.clock = config, spool, on_command, clock
        self.resend_after_s = config.agent.resend_after_s
        self._resend_wait = self.resend_after_s
        self.booked = 0
        self._progress_at = clock()
        self.connected = threading.Event()
        self.last_heard: float | None = None
        self.published = 0
        self._lock = threading.Lock()
        self._sent_up_to = 0  # highest seq published on this connection
        agent = config.agent
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=unique_client_id(f"agent-{agent.coop}-{agent.member}"))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
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
        client.subscribe([(self.config.topic("commands"), 1), (self.config.topic("booked"), 1),
                          (f"coop/{self.config.agent.coop}/heartbeat", 0)])
        with self._lock:
            self._sent_up_to = self.booked  # all that is not booked goes out again, in order
            self._progress_at = self.clock()
        self.connected.set()  # the agent's next tick sends (never from paho's thread)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object = None) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/booked"):
            self._booked_through(msg.payload)
            return
        self.last_heard = self.clock()
        if not msg.topic.endswith("/commands"):
            return  # a heartbeat: the coop is alive
        try:
            check_size_and_depth(msg.payload, DEFAULT_LIMITS)  # refused: a ValueError
            command = json.loads(msg.payload)
            if not isinstance(command, dict):
                raise ValueError("expected a JSON object")
        except (ValueError, RecursionError) as exc:
            log.warning("agent: command on %s ignored: %s", msg.topic, exc)
            return
        self.on_command(command)

    def _booked_through(self, payload: bytes) -> None:
        """``EPOCH:SEQ`` from the coop: forget what it booked, if it is about this spool's epoch.

        A retained answer about another epoch (a reinstalled agent's predecessor, or a
        bare number from before epochs) never drops this spool's readings.
        """
        text = payload.decode(errors="replace").strip()
        epoch, _, number = text.rpartition(":")
        try:
            seq, epoch_no = int(number), int(epoch or 0)
        except ValueError:
            log.warning("agent: booked = %r ignored: expected EPOCH:SEQ", payload[:40])
            return
        if epoch_no != self.spool.epoch:
            log.info("agent: booked = %r is about epoch %d, not ours (%d): ignored", text,
                     epoch_no, self.spool.epoch)
            return
        with self._lock:
            if seq > self.booked:
                self.booked = seq
                self._progress_at = self.clock()
                self._resend_wait = self.resend_after_s
                self.spool.ack_through(seq)

    def resend_if_stuck(self) -> None:
        """Publish again what is not booked if the coop has not moved for ``resend_after_s``.

        The wait doubles (to 10 min) while the coop stays stuck: an inbox that is
        down gets the backlog again now and then, not in a loop.
        """
        with self._lock:
            stuck = (self._sent_up_to > self.booked
                     and self.clock() - self._progress_at > self._resend_wait)
            if stuck:
                log.warning("agent: readings after %d not booked for %.0f s: sending again",
                            self.booked, self._resend_wait)
                self._sent_up_to = self.booked
                self._progress_at = self.clock()
                self._resend_wait = min(2 * self._resend_wait, 600.0)

    def send_pending(self) -> None:
        """Publish readings not yet sent on this connection, in order, within :data:`WINDOW`.

        Called from the agent's loop only: paho's callbacks never publish, so its
        locks and ours are never taken in opposite orders.
        """
        if not self.connected.is_set():
            return
        topic = self.config.topic("readings")
        with self._lock:
            after, room = self._sent_up_to, WINDOW - (self._sent_up_to - self.booked)
            batch = [(s, p) for s, p in self.spool.pending(limit=WINDOW + 1000)
                     if s > after][:max(room, 0)]
        for seq, payload in batch:
            info = self._client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # the connection dropped: all goes out again on reconnect
            with self._lock:
                self._sent_up_to = max(self._sent_up_to, seq)
            self.published += 1

    def publish_live(self, kind: str, values: dict[str, float | None]) -> None:
        """The newest values of one device (QoS 0, not retained: stale ones never replay)."""
        if self.connected.is_set():
            self._client.publish(self.config.topic(f"live/{kind}"), json.dumps(values), qos=0)
