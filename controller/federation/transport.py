"""One coop's federation node: signed offers and results over its own (bridged) broker.

Topics, all QoS 1, under the publishing coop's own prefix:

* ``federation/<coop>/offers/<interval>``: its offer, retained for the recent
  ``retain_intervals`` (late joiners get them), cleared afterwards;
* ``federation/<coop>/results/<interval>``: the hash of its settlement, retained;
* ``federation/<coop>/requests``: "I miss these coops' offers for this interval";
* ``federation/<coop>/relay/<origin>/<interval>``: another coop's offer, as signed.

Nothing trusts the bridge to deliver once: each message is numbered
(``seq``), signed, idempotent, and asked for again while missing. The owner
of a missing offer answers a request by publishing it again; after the
second request any peer holding it relays it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.federation.allocation import Settlement
from controller.federation.charter import Charter
from controller.federation.offers import (
    Offer,
    Rejected,
    load_private_key,
    open_envelope,
    parse_offer,
    sign,
)
from controller.federation.reconcile import Reconciler
from devices.mqtt.access import unique_client_id

log = logging.getLogger(__name__)
SYS_BRIDGES = "$SYS/broker/connection/+/state"
#: A request repeated this many times is answered by any peer holding the offer.
RELAY_FROM_ATTEMPT = 2


class FederationNode:
    """Publishes this coop's offers and results; settles intervals as offers arrive.

    ``on_settled(settlement)`` is called once per settled interval, from the
    node's own thread: that is where the ledger books ``to_federation`` and
    ``from_federation``. A ``passive`` node (``federation status``) only listens: it
    settles to compare hashes but publishes nothing and books nothing.
    """

    def __init__(self, charter: Charter, on_settled: Callable[[Settlement], None] | None = None,
                 request_every_s: float = 1.0, tick_s: float = 0.2, passive: bool = False,
                 client_id: str | None = None) -> None:
        self.charter = charter
        self.me = charter.self_.id
        self.key = load_private_key(charter.self_.private_key)
        self.book = Reconciler(charter)
        self.on_settled = on_settled
        self.request_every_s = request_every_s
        self.tick_s = tick_s
        self.passive = passive
        self.bridges: dict[str, str] = {}
        self.messages_in = self.bytes_in = self.bytes_out = 0
        self.relayed_in = 0  # offers first received through another coop
        self._seq = int(time.time() * 1000)  # numbers keep rising across restarts
        self._own: dict[str, bytes] = {}  # topic → retained payload this coop published
        self._raw_offers: dict[tuple[str, int], bytes] = {}
        self._asked: dict[int, tuple[float, int]] = {}  # interval → (last asked, attempts)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=client_id
                                   or unique_client_id(f"federation-{self.me}"))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._thread = threading.Thread(target=self._run, name=f"federation-{self.me}",
                                        daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (retrying in the background) and start reconciling."""
        host, port = self.charter.self_.host_port
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling and disconnect."""
        self._stop.set()
        self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()

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
            return
        client.subscribe([("federation/+/offers/+", 1), ("federation/+/results/+", 1),
                          ("federation/+/requests", 1), ("federation/+/relay/+/+", 1),
                          (SYS_BRIDGES, 0)])
        with self._lock:  # whatever was sent while away is sent again: it is idempotent
            own = list(self._own.items())
        for topic, payload in own:
            self._publish(topic, payload, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object = None) -> None:
        self.connected.clear()

    # -- publishing ------------------------------------------------------------------------
    def publish_offer(self, interval: int, surplus_wh: int, deficit_wh: int) -> Offer:
        """Sign and publish this coop's offer for ``interval`` (retained)."""
        offer = Offer(self.me, interval, int(surplus_wh), int(deficit_wh), self._next_seq())
        payload = sign(offer.body(), self.key)
        parse_offer(open_envelope(payload, self.charter), self.charter)  # our own rules too
        topic = f"federation/{self.me}/offers/{interval}"
        with self._lock:
            self.book.add_offer(offer)
            self._raw_offers[(self.me, interval)] = payload
            self._own[topic] = payload
        self._publish(topic, payload, retain=True)
        return offer

    def _publish_result(self, settlement: Settlement) -> None:
        body = {"kind": "result", "coop": self.me, "interval": settlement.interval,
                "digest": settlement.digest, "seq": self._next_seq()}
        topic = f"federation/{self.me}/results/{settlement.interval}"
        payload = sign(body, self.key)
        with self._lock:
            self._own[topic] = payload
            self.book.add_result(self.me, settlement.interval, settlement.digest)
        self._publish(topic, payload, retain=True)

    # -- receiving -------------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages_in += 1
        self.bytes_in += len(msg.topic) + len(msg.payload)
        if msg.topic.startswith("$SYS/"):
            name = msg.topic.split("/")[3]
            self.bridges[name] = "up" if msg.payload.strip() == b"1" else "down"
            return
        if not msg.payload:
            return  # a cleared retained offer
        try:
            body = open_envelope(msg.payload, self.charter)
            kind = body.get("kind")
            parts = msg.topic.split("/")
            if kind == "offer":
                self._receive_offer(parse_offer(body, self.charter), msg.payload, parts)
            elif kind == "result":
                self._receive_result(body, parts)
            elif kind == "request":
                self._answer(body)
            else:
                raise Rejected(f"kind = {kind!r}: expected offer, result or request")
        except Rejected as exc:
            with self._lock:
                self.book.reject(f"{msg.topic}: {exc}")

    def _receive_offer(self, offer: Offer, payload: bytes, parts: list[str]) -> None:
        relayed = len(parts) == 5 and parts[2] == "relay"
        if not relayed and parts[1] != offer.coop:
            raise Rejected(f"offer from {offer.coop!r} under another coop's prefix")
        with self._lock:
            if self.book.add_offer(offer) == "new":
                self._raw_offers[(offer.coop, offer.interval)] = payload
                self.relayed_in += relayed

    def _receive_result(self, body: dict[str, object], parts: list[str]) -> None:
        coop, interval, digest = body["coop"], body.get("interval"), body.get("digest")
        if parts[1] != coop or not isinstance(interval, int) or not isinstance(digest, str):
            raise Rejected(f"result from {coop!r}: malformed or under another coop's prefix")
        with self._lock:
            self.book.add_result(str(coop), interval, digest)

    def _answer(self, body: dict[str, object]) -> None:
        interval, want = body.get("interval"), body.get("want")
        attempt = body.get("attempt", 1)
        if not isinstance(interval, int) or not isinstance(want, list):
            raise Rejected("request: expected interval (integer) and want (list of coop ids)")
        for coop in want:
            with self._lock:
                payload = self._raw_offers.get((str(coop), interval))
            if payload is None:
                continue
            if coop == self.me:
                self._publish(f"federation/{self.me}/offers/{interval}", payload, retain=True)
            elif isinstance(attempt, int) and attempt >= RELAY_FROM_ATTEMPT:
                self._publish(f"federation/{self.me}/relay/{coop}/{interval}", payload,
                              retain=False)

    # -- reconciling -----------------------------------------------------------------------
    def reconcile(self, now: float | None = None) -> list[Settlement]:
        """Settle what is complete, publish its hash, ask again for what is missing."""
        now = time.monotonic() if now is None else now
        with self._lock:
            settled = self.book.settle_ready()
        if self.passive:
            return settled
        for settlement in settled:
            self._publish_result(settlement)
            if self.on_settled is not None:
                self.on_settled(settlement)
        if self.connected.is_set():
            self._request_missing(now)
        self._forget_old()
        return settled

    def _request_missing(self, now: float) -> None:
        with self._lock:
            wanted = {i: self.book.missing(i) for i in self.book.open_intervals()}
        for interval, missing in wanted.items():
            # Our own offer is missing only until our controller closes the interval.
            coops = [c for c in missing if c != self.me]
            if not coops:
                continue
            last, attempts = self._asked.get(interval, (-1e18, 0))
            if now - last < self.request_every_s:
                continue
            self._asked[interval] = (now, attempts + 1)
            body = {"kind": "request", "coop": self.me, "interval": interval,
                    "want": list(coops), "attempt": attempts + 1, "seq": self._next_seq()}
            self._publish(f"federation/{self.me}/requests", sign(body, self.key), retain=False)

    def _forget_old(self) -> None:
        """Clear retained offers and results of intervals no longer recent."""
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
            for key in [k for k in self._raw_offers if k[1] < cutoff]:
                del self._raw_offers[key]
        for topic in old:
            self._publish(topic, b"", retain=True)  # an empty retained message clears it

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
                "disagreements": [{"interval": d.interval, "coop": d.coop, "what": d.what,
                                   "ours": d.ours, "theirs": d.theirs}
                                  for d in book.disagreements],
                "rejected": list(book.rejected[-20:]),
            }
