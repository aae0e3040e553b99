"""MQTT devices: one paho-mqtt 2.x subscriber per broker (the driver per device is in
:mod:`devices.mqtt.device`).

Messages arrive on paho's network thread and are parsed at once, under the
limits of :mod:`devices.mqtt.guard`; each value is stored with its arrival
time. The network thread is supervised and restarted should it ever end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.modbus.transport import DeviceError
from devices.mqtt.access import ANONYMOUS, MqttAccess, refusal_reason, unique_client_id
from devices.mqtt.formats import Parser, PayloadError, Values
from devices.mqtt.guard import (
    DEFAULT_LIMITS,
    MessageLimits,
    PayloadRefused,
    RefusalLog,
    TopicGate,
    check_size_and_depth,
)

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
#: paho's reconnect delay doubles from 1 s up to this.
RECONNECT_MAX_S = 30
#: How often the supervisor checks paho's network thread.
SUPERVISE_S = 0.2
#: A reader that has run connected this long starts its back-off over after a crash.
RESTART_RESET_S = 60.0


def restart_backoff_s(failures: int) -> float:
    """Seconds before restarting a reader that ended ``failures`` times in a row."""
    return float(min(2 ** (min(failures, 7) - 1), 60))


@dataclass(slots=True)
class TopicState:
    """What the newest message on a topic said, and when."""

    values: Values = field(default_factory=dict)
    received: float | None = None
    error: str | None = None
    #: When each value last arrived: a frame may carry only some (Shelly NotifyStatus).
    arrived: dict[str, float] = field(default_factory=dict)


class MqttHub:
    """One connection to a broker, shared by every MQTT device on it.

    Every message is parsed under :class:`~devices.mqtt.guard.MessageLimits`, and
    any exception it raises is caught, counted for its topic and logged at most
    once a minute: no payload stops the reader. paho's network thread is
    supervised all the same: should it end for any other reason, the hub says so
    (:meth:`reader_status`, ``down``), and starts a new client after a back-off
    (1, 2, 4, … 60 s). The client id is unique to this hub (:func:`unique_client_id`),
    so no other Commonwatt client takes over its session; if another client does,
    paho reconnects within seconds and :meth:`_on_connect` subscribes again.
    """

    def __init__(self, host: str, port: int, client_id: str | None = None,
                 access: MqttAccess = ANONYMOUS, limits: MessageLimits = DEFAULT_LIMITS) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or unique_client_id("commonwatt-devices")
        self.access, self.limits = access, limits
        #: Why the broker cannot be used (refused login, TLS failure); None once connected.
        self.failure: str | None = None
        self._answered = threading.Event()
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self._parsers: dict[str, Parser] = {}
        self.states: dict[str, TopicState] = {}
        self._gates: dict[str, TopicGate] = {}
        self.connected = threading.Event()
        self.refusals = RefusalLog()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        #: What ended the last network thread (an exception that escaped a callback).
        self._crash: str | None = None
        self._state, self._state_since, self._state_reason = "stopped", time.time(), ""
        self.restarts = 0
        self._client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        self.access.apply(client)
        client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._guarded(self._on_connect)
        client.on_disconnect = self._guarded(self._on_disconnect)
        client.on_message = self._guarded(self._on_message)
        client.on_subscribe = self._guarded(self._on_subscribe)
        return client

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """``callback``, noting what it raised before paho's thread ends with it."""
        def run(*args: object) -> None:
            try:
                callback(*args)
            except BaseException as exc:
                self._crash = f"{callback.__name__} raised {type(exc).__name__}: {exc}"[:300]
                raise
        return run

    def register(self, topics: dict[str, Parser]) -> None:
        """Listen to ``topics`` (topic → parser); call before or after :meth:`start`."""
        for topic, parser in topics.items():
            self._parsers[topic] = parser
            self.states.setdefault(topic, TopicState())
            self._gates.setdefault(topic, TopicGate(self.limits))
            if self.connected.is_set():
                self._subscribe(topic)

    def _subscribe(self, topic: str) -> None:
        with self._lock:
            self.subscribed.clear()
            _, mid = self._client.subscribe(topic, qos=0)
            if mid is not None:
                self._pending.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: object, properties: object = None) -> None:
        with self._lock:
            self._pending.discard(mid)
            if not self._pending:
                self.subscribed.set()

    def wait_subscribed(self, timeout_s: float = 5.0) -> bool:
        """Block until the broker has acknowledged every subscription."""
        return self.subscribed.wait(timeout_s)

    def start(self, timeout_s: float = 5.0) -> None:
        """Connect, run paho's network loop in its thread, and supervise it.

        The first connection is made here, not in paho's thread, so that a TLS
        or socket error is raised with its cause; paho keeps retrying after it.
        """
        where = f"{self.host}:{self.port}"
        if self._supervisor is not None:  # started before, its first connect failed:
            if self.failure is not None:  # paho keeps retrying; say why it cannot yet
                raise DeviceError("refused", self.failure)
            return
        self._set_state("connecting", "starting")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"mqtt-supervisor-{self.client_id}")
        try:
            self._client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:
            self.failure = f"cannot connect to the MQTT broker at {where}: {exc}"
            self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
            self._client.loop_start()
            self._supervisor.start()
            raise DeviceError("refused", self.failure) from None
        self._client.loop_start()
        self._supervisor.start()
        if not self._answered.wait(timeout_s):
            raise DeviceError("refused", f"no MQTT broker answered at {where}")
        if self.failure is not None:
            raise DeviceError("refused", self.failure)

    def stop(self) -> None:
        """Disconnect and stop the network thread and its supervisor."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor.is_alive():
            self._supervisor.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        self._set_state("stopped", "stopped")
        self.refusals.flush(force=True)

    def _network_thread_alive(self) -> bool:
        # paho 2.x keeps the thread loop_start() made in ``_thread`` and clears it
        # when loop_forever() ends (``_thread_main``); tests/test_mqtt_reader.py pins it.
        thread = getattr(self._client, "_thread", None)
        return thread is not None and thread.is_alive()

    def _supervise(self) -> None:
        """Restart paho's network thread, with back-off, whenever it ends unasked."""
        failures = 0
        while not self._stopping.wait(SUPERVISE_S):
            if self._network_thread_alive():
                if failures and self.connected.is_set() and \
                        time.time() - self._state_since > RESTART_RESET_S:
                    failures = 0  # it has run well for a while: the next crash starts over
                continue
            failures += 1
            reason = self._crash or "paho's network thread ended"
            self._crash = None
            wait_s = restart_backoff_s(failures)
            self.connected.clear()
            self._set_state("down", reason)
            log.error("MQTT reader for %s:%s stopped (%s); restarting in %g s (restart %d)",
                      self.host, self.port, reason, wait_s, self.restarts + 1)
            if self._stopping.wait(wait_s):
                return
            with contextlib.suppress(Exception):
                self._client.loop_stop()
            client = self._new_client()
            client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
            self._client = client
            self.restarts += 1
            self._set_state("connecting", f"restarted after: {reason}")
            client.loop_start()

    def _set_state(self, state: str, reason: str) -> None:
        if state != self._state:
            self._state, self._state_since = state, time.time()
        self._state_reason = reason

    def reader_status(self) -> dict[str, object]:
        """The reader's state for ``/healthz``: ``running`` (connected), ``connecting``
        (paho retries the broker), ``down`` (its thread ended; restarting) or ``stopped``;
        with ``since`` (Unix s), the reason, restarts, the client id and refusals."""
        return {"state": self._state, "since": round(self._state_since, 3),
                "for_s": round(time.time() - self._state_since, 3),
                "reason": self._state_reason, "restarts": self.restarts,
                "client_id": self.client_id,
                "messages_refused": sum(self.refusals.totals.values())}

    def publish(self, topic: str, payload: str) -> None:
        """Send a command (QoS 1, not retained: a stale command must never replay)."""
        info = self._client.publish(topic, payload, qos=1, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceError("disconnected", f"MQTT publish to {topic} failed (rc {info.rc})")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            self.failure = (f"the MQTT broker at {self.host}:{self.port} refused the "
                            f"connection: {refusal_reason(reason)}")
            self._set_state("connecting", self.failure)
            self._answered.set()
            return
        self.failure = None
        # A clean session: after any reconnect (a broker restart, a session taken
        # over by a client with our id) the subscriptions are gone, so renew them all.
        with self._lock:
            self._pending.clear()
        for topic in list(self._parsers):
            self._subscribe(topic)
        if not self._parsers:
            self.subscribed.set()
        self.connected.set()
        self._set_state("running", "connected")
        self._answered.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: object, properties: object = None) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            self._set_state("connecting", f"disconnected: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self._read(msg.topic, msg.payload)
        except Exception as exc:  # noqa: BLE001 - one message, whatever it is, never stops the reader
            self._refuse(msg.topic, f"{type(exc).__name__}: {str(exc)[:200]}", mark=True)

    def _read(self, topic: str, payload: bytes) -> None:
        parser = self._parsers.get(topic)
        if parser is None:
            return
        gate = self._gates[topic]
        now = time.monotonic()
        busy = gate.admit(now)
        if busy is not None:  # flooding or muted: not parsed, the last good values stand
            self._refuse(topic, busy, mark=False)
            return
        try:
            check_size_and_depth(payload, self.limits)
        except PayloadRefused as exc:
            self._refuse(topic, f"refused payload: {exc}", mark=True)
            return
        state = self.states[topic]
        started = time.perf_counter()
        try:
            values = parser(topic, payload)
        except PayloadError as exc:
            state.error = f"malformed payload: {exc}"
            state.received = time.monotonic()
            self.refusals.refused(topic, str(exc)[:200])
            return
        slow = gate.timed(time.perf_counter() - started, time.monotonic())
        if slow is not None:
            self._refuse(topic, f"refused payload: {slow}", mark=True)
            return
        if not values:  # a frame about something else (a Shelly NotifyEvent): not a reading
            return
        now = time.monotonic()
        state.values = {**state.values, **values}
        state.arrived.update(dict.fromkeys(values, now))
        state.error = None
        state.received = now

    def _refuse(self, topic: str, reason: str, mark: bool) -> None:
        """Count a message not read; with ``mark`` its device reads as garbage until the
        next good payload (as a malformed one does)."""
        if mark and topic in self.states:
            state = self.states[topic]
            state.error = f"{reason} on {topic}"
            state.received = time.monotonic()
        self.refusals.refused(topic, reason)


# The driver, re-exported: ``from devices.mqtt.hub import MqttDevice`` predates the split.
from devices.mqtt.device import AGENT_ON_HOLD_S, LoadReading, MqttDevice  # noqa: E402

__all__ = ["AGENT_ON_HOLD_S", "LoadReading", "MqttDevice", "MqttHub", "TopicState",
           "restart_backoff_s"]
