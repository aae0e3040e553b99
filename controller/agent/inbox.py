"""The coop's side of its agents: every numbered reading booked exactly once.

The inbox subscribes (QoS 1) to ``coop/<coop>/agents/+/readings`` and stores
each reading under ``(member, epoch, seq)``: a reading sent twice (the agent sends
again what the coop has not confirmed) is stored once. It confirms on
``coop/<coop>/agents/<member>/booked`` (retained) ``EPOCH:SEQ``, the highest
number up to which every reading of the agent's epoch is booked. A reinstalled
agent (a fresh spool) starts a later epoch and numbers from 1 again: the inbox
accepts the new epoch once, records it (``agent_epochs``, the log, the audit
log when there is one) and from then on refuses readings of older epochs.
Readings older than a reading's ``oldest`` were booked before or dropped by the
agent, so the inbox never waits for them. A reading goes to its settlement
interval; if that interval is still open it is booked there
(``booked = 'interval'``), otherwise, late, it goes to the gap accounting
(``booked = 'gap'``), never into an interval already committed.

Each newly stored reading's meter counters wait in :meth:`ReadingInbox.drain`
for the controller's next cycle, which books them in the ledger
(:func:`controller.ledger.late.book_late_reading`): into the open interval,
or into the gap accounting of a committed one, once.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.files import private_file
from controller.governance import events as audit
from devices.mqtt.guard import DEFAULT_LIMITS, check_size_and_depth

if TYPE_CHECKING:
    from controller.config import CoopConfig

log = logging.getLogger(__name__)
DDL = """CREATE TABLE IF NOT EXISTS agent_readings_by_epoch (
    member TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    interval_start INTEGER NOT NULL,
    booked TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (member, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent_epochs (
    member TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (member, epoch)
);"""
#: Readings stored before epochs: kept, as epoch 0 (the agents of then had none).
_FROM_BEFORE_EPOCHS = """INSERT OR IGNORE INTO agent_readings_by_epoch
    SELECT member, 0, seq, ts, interval_start, booked, payload FROM agent_readings"""
#: A reading's lifetime counters, in the ledger's order (import, export, pv).
COUNTER_KEYS = ("import_wh", "export_wh", "pv_energy_wh")


def _wh(value: object) -> float:
    """A counter from a reading: NaN where unknown or not a usable number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value) if math.isfinite(value) and value >= 0 else math.nan


class ReadingInbox:
    """Readings from the coop's agents, each booked once."""

    def __init__(self, path: Path, coop: str, host: str, port: int, settlement_s: int,
                 open_since: Callable[[], float | None]) -> None:
        self.coop, self.step, self.open_since = coop, settlement_s, open_since
        private_file(path)  # members' readings: owner-only (controller.files)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(DDL)
        if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'agent_readings'"
                              ).fetchone():
            self._conn.execute(_FROM_BEFORE_EPOCHS)
            self._conn.execute("DROP TABLE agent_readings")
        self._lock = threading.Lock()
        self.path = Path(path)
        self.booked_through: dict[str, int] = {}
        self._above: dict[str, set[int]] = {}
        #: Each member's current agent epoch (the latest accepted).
        self.epochs: dict[str, int] = {m: int(e) for m, e in self._conn.execute(
            "SELECT member, MAX(epoch) FROM agent_epochs GROUP BY member")}
        self.duplicates = 0
        self.malformed = 0
        self.stale = 0  # readings of an epoch older than the member's current one
        #: (member, ts, (import, export, pv) Wh) of stored readings, for the ledger.
        self._counters: queue.SimpleQueue[tuple[str, float, tuple[float, float, float]]] = (
            queue.SimpleQueue())
        self.connected = threading.Event()
        self._host, self._port = host, port
        # The one client id that is fixed: a persistent session (clean_session False)
        # keeps the agents' readings queued while the controller restarts; one
        # controller per coop holds the ledger's lock, so no other client has it.
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"inbox-{coop}",
                                   clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a, **k: self.connected.clear()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)

    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        self._client.connect_async(self._host, self._port, keepalive=10)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and close the store."""
        self._client.disconnect()
        self._client.loop_stop()
        self._conn.close()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: object, properties: object = None) -> None:
        client.subscribe(f"coop/{self.coop}/agents/+/readings", qos=1)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        member = msg.topic.split("/")[3]
        try:
            # A payload too big or nested too deep is malformed, not a dead reader (issue 18).
            check_size_and_depth(msg.payload, DEFAULT_LIMITS)
            reading = json.loads(msg.payload)
            seq, ts = reading["seq"], float(reading["ts"])
            oldest, epoch = reading.get("oldest", seq), reading.get("epoch", 0)
            if reading.get("member") != member or not isinstance(seq, int):
                raise ValueError("member or seq do not match the topic")
            if not isinstance(oldest, int) or oldest > seq:
                raise ValueError(f"oldest = {oldest!r}: expected a number up to seq")
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
                raise ValueError(f"epoch = {epoch!r}: expected a whole number")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            self.malformed += 1
            log.warning("inbox: malformed reading on %s: %s", msg.topic, exc)
            return
        if not self._epoch_ok(member, epoch, ts):
            return
        if self.book(member, seq, ts, msg.payload.decode(), epoch):
            self._counters.put((member, ts, tuple(_wh(reading.get(k)) for k in COUNTER_KEYS)))
        through = self._advance(member, seq, oldest)
        if through is not None:
            answer = f"{epoch}:{through}" if epoch else str(through)
            client.publish(f"coop/{self.coop}/agents/{member}/booked", answer, qos=1,
                           retain=True)

    def _epoch_ok(self, member: str, epoch: int, ts: float) -> bool:
        """Accept the member's current epoch, a newer one once (recorded), never an older."""
        with self._lock:
            current = self.epochs.get(member)
            if current is not None and epoch < current:
                self.stale += 1
                log.warning("inbox: %s: reading of agent epoch %d refused: epoch %d is current",
                            member, epoch, current)
                return False
            if current == epoch:
                return True
            self._conn.execute("INSERT OR IGNORE INTO agent_epochs VALUES (?, ?, ?)",
                               (member, epoch, ts))
            self.epochs[member] = epoch
            self.booked_through.pop(member, None)  # numbers start again in a new epoch
            self._above.pop(member, None)
        if current is not None:
            log.warning("inbox: %s: agent reinstalled: new epoch %d (was %d), accepted once",
                        member, epoch, current)
            audit.record(self.path, "agent", "agent.new_epoch",
                         {"member": member, "epoch": epoch, "previous": current})
        return True

    def _advance(self, member: str, seq: int, oldest: int) -> int | None:
        """The member's new booked-through number, or ``None`` if it did not move."""
        with self._lock:
            if member not in self.booked_through:
                row = self._conn.execute(
                    "SELECT seq FROM agent_readings_by_epoch WHERE member = ? AND epoch = ? "
                    "ORDER BY seq", (member, self.epochs.get(member, 0))).fetchall()
                self.booked_through[member] = 0
                self._above[member] = {int(r[0]) for r in row}
            before = self.booked_through[member]
            through = max(before, oldest - 1)
            above = self._above[member]
            above.add(seq)
            while through + 1 in above:
                through += 1
                above.discard(through)
            self._above[member] = {s for s in above if s > through}
            self.booked_through[member] = through
        # A re-sent reading already booked gets the answer again: the agent may have missed it.
        return through if through > before or seq <= through else None

    def book(self, member: str, seq: int, ts: float, payload: str, epoch: int = 0) -> bool:
        """Store one reading; ``False`` if it was stored before (a re-send)."""
        interval = int(ts // self.step * self.step)
        open_since = self.open_since()
        booked = "interval" if open_since is None or interval >= open_since else "gap"
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO agent_readings_by_epoch VALUES (?, ?, ?, ?, ?, ?, ?)",
                (member, epoch, seq, ts, interval, booked, payload))
            if cur.rowcount == 0:
                self.duplicates += 1
                return False
        return True

    def drain(self) -> list[tuple[str, float, tuple[float, float, float]]]:
        """The counters of readings stored since the last call, in arrival order."""
        out = []
        while True:
            try:
                out.append(self._counters.get_nowait())
            except queue.Empty:
                return out

    def heartbeat(self) -> None:
        """Tell the coop's agents it is alive (they fall back to safe when it goes silent)."""
        if self.connected.is_set():
            self._client.publish(f"coop/{self.coop}/heartbeat", b"1", qos=0)

    def seqs(self, member: str, epoch: int | None = None) -> list[int]:
        """Numbers of the readings booked for ``member`` in ``epoch`` (default: the current)."""
        epoch = self.epochs.get(member, 0) if epoch is None else epoch
        with self._lock:
            return [int(r[0]) for r in self._conn.execute(
                "SELECT seq FROM agent_readings_by_epoch WHERE member = ? AND epoch = ? "
                "ORDER BY seq", (member, epoch))]

    def epochs_of(self, member: str) -> list[tuple[int, float]]:
        """``(epoch, first seen)`` of every agent epoch the member had, oldest first."""
        with self._lock:
            return [(int(e), float(t)) for e, t in self._conn.execute(
                "SELECT epoch, first_seen FROM agent_epochs WHERE member = ? ORDER BY epoch",
                (member,))]

    def booked_as(self) -> dict[str, int]:
        """How many readings went to open intervals and how many to the gap accounting."""
        with self._lock:
            return {k: int(n) for k, n in self._conn.execute(
                "SELECT booked, COUNT(*) FROM agent_readings_by_epoch GROUP BY booked")}


def agent_coop(config: CoopConfig) -> str | None:
    """The coop id in the topics of the config's agent-fed devices, if it has any."""
    for member in config.members:
        for device in member.devices:
            if device.family == "commonwatt-agent" and device.topic:
                parts = str(device.topic).split("/")
                if len(parts) >= 3 and parts[0] == "coop" and parts[2] == "agents":
                    return parts[1]
    return None


def inbox_for(config: CoopConfig, open_since: Callable[[], float | None]) -> ReadingInbox | None:
    """The started inbox of a coop with edge agents (beside its ledger), or ``None``."""
    coop = agent_coop(config)
    if coop is None or config.mqtt is None:
        return None
    path = config.storage.ledger.with_name(config.storage.ledger.stem + "-agents.sqlite")
    inbox = ReadingInbox(path, coop, config.mqtt.host, config.mqtt.port,
                         config.ledger.settlement_s, open_since)
    inbox.start()
    return inbox
