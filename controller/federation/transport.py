"""One coop's federation node: signed offers, results and proofs over its own (bridged) broker.

Topics, all QoS 1, under the publishing coop's own prefix:

* ``federation/<coop>/offers/<interval>``: its offer, retained until the interval
  is agreed by every coop (then cleared), or ``retain_intervals`` old;
* ``federation/<coop>/results/<interval>``: its result hash and what it counted,
  retained likewise;
* ``federation/<coop>/requests``: one batched, signed message per round: for
  each open interval, the coops whose offer or result it lacks. Each coop asked
  about backs off on its own (``request_every_s`` doubling up to ``max_backoff_s``);
* ``federation/<coop>/relay/<origin>/<interval>``: another coop's offer, as signed;
* ``federation/<coop>/proofs/<interval>``: two different offers signed by one
  coop for one interval, forwarded by every coop that sees them first.

Nothing trusts the bridge to deliver once: each message is numbered
(``seq``), signed, idempotent, and asked for again while missing. What the
agreement itself is lives in :mod:`.reconcile`; what survives a restart in
:mod:`.store`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.federation.allocation import Settlement
from controller.federation.asking import RELAY_FROM_ATTEMPT, Asking
from controller.federation.charter import Charter
from controller.federation.offers import (
    Offer,
    Rejected,
    load_private_key,
    open_envelope,
    parse_offer,
    sign,
    verify_proof,
)
from controller.federation.reconcile import Reconciler
from controller.federation.store import NodeStore
from devices.mqtt.access import unique_client_id

log = logging.getLogger(__name__)
SYS_BRIDGES = "$SYS/broker/connection/+/state"
__all__ = ["RELAY_FROM_ATTEMPT", "SUBSCRIPTIONS", "FederationNode"]
SUBSCRIPTIONS = [("federation/+/offers/+", 1), ("federation/+/results/+", 1),
                 ("federation/+/requests", 1), ("federation/+/relay/+/+", 1),
                 ("federation/+/proofs/+", 1), (SYS_BRIDGES, 0)]


class FederationNode(Asking):
    """Publishes this coop's offers and results; commits intervals once the coops agree.

    ``on_settled(settlement)`` is called once per *committed* interval, from the
    node's own thread: that is where the ledger books ``to_federation`` and
    ``from_federation``. A ``passive`` node only listens. ``state`` is the file
    of :class:`~controller.federation.store.NodeStore` (none: nothing survives a
    restart). ``clock`` gives wall time, against which deadlines are measured.
    """

    def __init__(self, charter: Charter, on_settled: Callable[[Settlement], None] | None = None,
                 request_every_s: float = 1.0, tick_s: float = 0.2, passive: bool = False,
                 client_id: str | None = None, state: Path | None = None,
                 clock: Callable[[], float] = time.time, max_backoff_s: float = 30.0,
                 grace_s: float = 2.0) -> None:
        self.charter = charter
        self.me = charter.self_.id
        self.key = load_private_key(charter.self_.private_key)
        self.book = Reconciler(charter, None if passive else self.me)
        self.on_settled = on_settled
        self.request_every_s, self.max_backoff_s = request_every_s, max_backoff_s
        #: Nothing is asked for an interval younger than this (on this coop's clock):
        #: offers and results normally arrive by themselves within it.
        self.grace_s = grace_s
        self._opened: dict[int, float] = {}  # interval → when this node first saw it
        self._settled_at: dict[int, float] = {}  # interval → when our result last changed
        self._answered: dict[tuple[int, str, bool], float] = {}  # (interval, coop, relay) → when
        self.tick_s = tick_s
        self.passive = passive
        self.clock = clock
        self.store = NodeStore(state) if state is not None and not passive else None
        self.bridges: dict[str, str] = {}
        self.messages_in = self.bytes_in = self.bytes_out = 0
        self.requests_out = 0
        self.relayed_in = 0  # offers first received through another coop
        self._seq = int(time.time() * 1000)  # numbers keep rising across restarts
        self._own: dict[str, bytes] = {}  # topic → payload this coop retains now
        self._results: dict[int, bytes] = {}  # interval → our signed result
        self._asked: dict[str, tuple[float, int, tuple[int, ...]]] = {}  # coop → backoff
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=client_id
                                   or unique_client_id(f"federation-{self.me}"))
        credentials = charter.self_.credentials()
        if credentials is not None:
            self._client.username_pw_set(*credentials)
        if charter.self_.tls_ca is not None:
            self._client.tls_set(ca_certs=str(charter.self_.tls_ca))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._thread = threading.Thread(target=self._run, name=f"federation-{self.me}",
                                        daemon=True)
        self._restore()

    # -- lifecycle -------------------------------------------------------------------------
    def _restore(self) -> None:
        """Take back this coop's own offers and commits from its store."""
        if self.store is None:
            return
        for settlement in self.store.committed():
            self.book.commit_known(settlement)
        for topic, interval, payload in self.store.own():
            if "/offers/" in topic:
                try:
                    offer = parse_offer(open_envelope(payload, self.charter), self.charter)
                except Rejected as exc:  # the charter changed since (a key, a cap)
                    log.error("federation: stored offer %s no longer valid: %s", topic, exc)
                    continue
                self.book.add_offer(offer, payload)
            else:
                self._results[interval] = payload
            if not self.book.agreed(interval):
                self._own[topic] = payload

    def replay(self) -> list[Settlement]:
        """Hand every stored commit to ``on_settled`` again (booking is idempotent)."""
        if self.store is None or self.on_settled is None:
            return []
        # The recent ones: older commits were booked long ago (the ledger says so anyway).
        span = self.charter.federation.retain_intervals * self.charter.federation.interval_s
        committed = self.store.committed(since=int(self.clock()) - span)
        for settlement in committed:
            self.on_settled(settlement)
        return committed

    def start(self) -> None:
        """Connect (retrying in the background) and start reconciling."""
        host, port = self.charter.self_.host_port
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling and disconnect."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        if self.store is not None:
            self.store.close()

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.passive:
            return
        self.bytes_out += len(topic) + len(payload)
        self._client.publish(topic, payload, qos=1, retain=retain)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: object, properties: object = None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("federation: broker refused the connection: %s", reason_code)
            return
        client.subscribe(SUBSCRIPTIONS)
        with self._lock:  # whatever was sent while away is sent again: it is idempotent
            own = list(self._own.items())
        for topic, payload in own:
            self._publish(topic, payload, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object = None) -> None:
        self.connected.clear()

    # -- publishing ------------------------------------------------------------------------
    def publish_offer(self, interval: int, surplus_wh: int, deficit_wh: int,
                      metered_export_wh: int | None = None,
                      metered_import_wh: int | None = None) -> Offer:
        """Sign and publish this coop's offer for ``interval`` (retained).

        An interval offered before (this run or, from the store, an earlier one) is
        offered again *as it was*: a second, different offer would be equivocation.
        """
        topic = f"federation/{self.me}/offers/{interval}"
        with self._lock:
            state = self.book.intervals.get(interval)
            held = state.offers.get(self.me) if state is not None else None
            if held is not None:
                payload = state.raw[self.me]  # type: ignore[union-attr]
                if held.content()[:2] != (surplus_wh, deficit_wh):
                    log.error("federation: interval %d offered before as %s; keeping it",
                              interval, held.content())
                self._publish(topic, payload, retain=not self.book.agreed(interval))
                return held
            offer = Offer(self.me, interval, int(surplus_wh), int(deficit_wh), self._next_seq(),
                          int(surplus_wh if metered_export_wh is None else metered_export_wh),
                          int(deficit_wh if metered_import_wh is None else metered_import_wh))
            payload = sign(offer.body(), self.key)
            parse_offer(open_envelope(payload, self.charter), self.charter)  # our own rules too
            if self.store is not None:
                self.store.keep(topic, interval, payload)  # on disk before it leaves
            self.book.add_offer(offer, payload)
            self._own[topic] = payload
        self._publish(topic, payload, retain=True)
        return offer

    def _publish_result(self, settlement: Settlement) -> None:
        body = {"kind": "result", "coop": self.me, "interval": settlement.interval,
                "digest": settlement.digest, "counted": settlement.counted,
                "seq": self._next_seq()}
        topic = f"federation/{self.me}/results/{settlement.interval}"
        payload = sign(body, self.key)
        with self._lock:
            self._own[topic] = payload
            self._results[settlement.interval] = payload
        if self.store is not None:
            self.store.keep(topic, settlement.interval, payload)
        self._publish(topic, payload, retain=True)

    def _publish_proof(self, accused: str, interval: int, proof: tuple[bytes, bytes]) -> None:
        body = {"kind": "proof", "coop": self.me, "interval": interval, "accused": accused,
                "offers": [p.decode() for p in proof], "seq": self._next_seq()}
        self._publish(f"federation/{self.me}/proofs/{interval}", sign(body, self.key),
                      retain=False)

    # -- receiving -------------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages_in += 1
        self.bytes_in += len(msg.topic) + len(msg.payload)
        if msg.topic.startswith("$SYS/"):
            name = msg.topic.split("/")[3]
            self.bridges[name] = "up" if msg.payload.strip() == b"1" else "down"
            return
        if not msg.payload:
            return  # a cleared retained message
        try:
            body = open_envelope(msg.payload, self.charter)
            kind = body.get("kind")
            parts = msg.topic.split("/")
            if kind != "offer" and parts[1] != body.get("coop"):
                raise Rejected(f"{kind} from {body.get('coop')!r} under another coop's prefix")
            if kind == "offer":
                self._receive_offer(parse_offer(body, self.charter), msg.payload, parts)
            elif kind == "result":
                self._receive_result(body)
            elif kind == "request":
                self._answer(body)
            elif kind == "proof":
                self._receive_proof(body)
            else:
                raise Rejected(f"kind = {kind!r}: expected offer, result, request or proof")
        except Rejected as exc:
            with self._lock:
                self.book.reject(f"{msg.topic}: {exc}")

    def _receive_offer(self, offer: Offer, payload: bytes, parts: list[str]) -> None:
        relayed = len(parts) == 5 and parts[2] == "relay"
        if not relayed and parts[1] != offer.coop:
            raise Rejected(f"offer from {offer.coop!r} under another coop's prefix")
        with self._lock:
            outcome = self.book.add_offer(offer, payload)
            self.relayed_in += relayed and outcome == "new"
            proof = self.book.intervals[offer.interval].proofs.get(offer.coop) \
                if outcome == "conflict" else None
        if proof is not None:  # we saw both: everyone must, whoever carried the second
            self._publish_proof(offer.coop, offer.interval, proof)

    def _receive_result(self, body: dict[str, object]) -> None:
        interval, digest, counted = body.get("interval"), body.get("digest"), body.get("counted")
        seq = body.get("seq", 0)
        if (not isinstance(interval, int) or not isinstance(digest, str)
                or not isinstance(counted, dict) or not isinstance(seq, int)
                or not all(isinstance(k, str) and isinstance(v, str)
                           for k, v in counted.items())):
            raise Rejected(f"result from {body['coop']!r}: expected interval, digest, counted")
        with self._lock:
            self.book.add_result(str(body["coop"]), interval, digest, counted, seq)

    def _receive_proof(self, body: dict[str, object]) -> None:
        accused, interval, payloads = verify_proof(body, self.charter)
        offers = [parse_offer(open_envelope(p, self.charter), self.charter) for p in payloads]
        with self._lock:
            news = self.book.add_proof(accused, interval, payloads, offers)
        if news:
            log.error("federation: interval %d: proof that %s equivocated, from %s", interval,
                      accused, body["coop"])
            self._publish_proof(accused, interval, (payloads[0], payloads[1]))

    # -- reconciling -----------------------------------------------------------------------
    def reconcile(self, now: float | None = None) -> list[Settlement]:
        """Publish changed results, commit what is agreed, ask (batched) for what is missing."""
        wall = self.clock()
        now = time.monotonic() if now is None else now
        with self._lock:
            changed, committed = self.book.step_all(wall)
        if self.passive:
            return committed
        for settlement in changed:
            self._settled_at[settlement.interval] = now
            self._publish_result(settlement)
        for settlement in committed:
            if self.store is not None:
                self.store.commit(settlement)  # on disk before the ledger books it
            if self.on_settled is not None:
                self.on_settled(settlement)
        if self.connected.is_set():
            self._request_missing(now)
        self._clear_agreed()
        self._forget_old()
        return committed

    def _clear_agreed(self) -> None:
        """Clear our retained messages of intervals every coop agreed on."""
        with self._lock:
            done = [t for t in self._own if self.book.unanimous(int(t.rsplit("/", 1)[1]))]
            for topic in done:
                del self._own[topic]
        for topic in done:
            self._publish(topic, b"", retain=True)  # an empty retained message clears it

    def _forget_old(self) -> None:
        """Forget intervals no longer recent (and clear what we still retain of them)."""
        keep = self.charter.federation.retain_intervals
        with self._lock:
            known = sorted(self.book.intervals)
            if len(known) <= keep:
                return
            cutoff = known[-keep]
            old = [t for t in self._own if int(t.rsplit("/", 1)[1]) < cutoff]
            for topic in old:
                del self._own[topic]
            self.book.forget_before(cutoff)
            for interval in [i for i in self._results if i < cutoff]:
                del self._results[interval]
            for interval in [i for i in self._opened if i < cutoff]:
                del self._opened[interval]
            for interval in [i for i in self._settled_at if i < cutoff]:
                del self._settled_at[interval]
            for key in [k for k in self._answered if k[0] < cutoff]:
                del self._answered[key]
        if self.store is not None:
            self.store.forget_before(cutoff)
        for topic in old:
            self._publish(topic, b"", retain=True)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.reconcile()
            except Exception:  # the node must outlive one bad interval
                log.exception("federation: reconcile failed")

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """Peers, bridge states, the last agreed interval and every disagreement."""
        with self._lock:
            book = self.book
            peers = []
            for m in self.charter.members:
                offers = [i for i, s in book.intervals.items() if m.id in s.offers]
                results = [i for i, s in book.intervals.items() if m.id in s.results]
                peers.append({"id": m.id, "expires": m.expires.isoformat(),
                              "active": m.id in self.charter.active(time.time()),
                              "last_offer": max(offers, default=None),
                              "last_result": max(results, default=None)})
            return {
                "coop": self.me, "connected": self.connected.is_set(), "peers": peers,
                "bridges": dict(sorted(self.bridges.items())),
                "last_agreed": book.last_agreed(),
                "waiting": {i: list(book.missing(i)) for i in book.open_intervals()},
                "equivocations": [{"interval": i, "coop": c} for i, s in
                                  sorted(book.intervals.items()) for c in sorted(s.proofs)],
                "disagreements": [{"interval": d.interval, "coop": d.coop, "what": d.what,
                                   "ours": d.ours, "theirs": d.theirs}
                                  for d in book.disagreements],
                "rejected": list(book.rejected[-20:]),
                "requests_out": self.requests_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            }
