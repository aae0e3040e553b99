"""``python -m bench federation``: one interval of a federation of 100 coops × 1,000 households.

Per settlement interval, one coop's machine:

* signs its offer and its result hash (``sign_ms``);
* verifies the 99 peers' offers and 99 result hashes (``verify_ms``): Ed25519;
* runs the deterministic allocation over the 100 offers and hashes it (``settle_ms``);
* splits its share among its 1,000 members by its own policy (``apportion_ms``).

``interval_ms`` is their sum: the federation's cost per interval on one coop's
machine. ``all_coops_apportion_ms`` splits every coop's share among its members
(10^5 members) on one machine, for scale. Bytes on the wire count MQTT 3.1.1
QoS 1 PUBLISH packets (fixed header, topic, packet id, payload) and their
PUBACKs, for the envelopes as the node sends them: what one coop publishes,
what its node receives, and what its broker sends over its bridges (each of
its messages crosses each of its 99 bridges once; a re-request adds one
request and one answer).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from bench.timing import median_s
from controller.federation.allocation import settle
from controller.federation.apportion import apportion
from controller.federation.offers import (
    Offer,
    generate_key,
    open_envelope,
    public_b64,
    sign,
    verify_offer,
)

STEP = 900
BASE = 1_800_000_000 // STEP * STEP
PUBACK_BYTES = 4
FAR = datetime(2099, 1, 1, tzinfo=UTC)


def publish_bytes(topic: str, payload: bytes) -> int:
    """Bytes of one MQTT 3.1.1 QoS 1 PUBLISH packet, plus its PUBACK."""
    remaining = 2 + len(topic.encode()) + 2 + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining + PUBACK_BYTES


def run(quick: bool = False) -> dict[str, object]:
    """Time one interval; return the JSON-ready report."""
    from controller.federation.charter import Charter

    coops, households = (10, 100) if quick else (100, 1000)
    repeats = 3 if quick else 7
    rng = np.random.default_rng(12)
    ids = [f"coop-{k:03d}" for k in range(coops)]
    keys = {c: generate_key() for c in ids}
    charter = Charter.model_validate({
        "federation": {"name": "bench", "rule": "prorata", "interval_s": STEP},
        "self": {"id": ids[0], "private_key": "unused.key"},
        # 10 MW connections: 1,000 households' offers stay under the charter's cap.
        "members": [{"id": c, "public_key": public_b64(k), "expires": FAR,
                     "connection_kw": 10_000} for c, k in keys.items()],
    })
    to_grid = rng.integers(0, 3000, size=(coops, households)) * (rng.random((coops, households))
                                                                  < 0.4)
    from_grid = rng.integers(0, 3000, size=(coops, households)) * (to_grid == 0)
    offers = [Offer(c, BASE, int(to_grid[k].sum()), int(from_grid[k].sum()), k,
                    int(to_grid[k].sum()), int(from_grid[k].sum())) for k, c in enumerate(ids)]
    offer_msgs = [sign(o.body(), keys[o.coop]) for o in offers]
    terms = charter.terms(BASE).digest()
    settlement = settle(BASE, offers, "prorata", terms)
    result_msgs = [sign({"kind": "result", "coop": c, "interval": BASE,
                         "digest": settlement.digest, "counted": settlement.counted,
                         "seq": 1}, keys[c]) for c in ids]
    members = tuple(f"m{j}" for j in range(households))
    key_w, tier = np.ones(households), np.zeros(households, dtype=np.int64)

    def apportion_coop(k: int) -> None:
        c_to, c_from = settlement.for_coop(ids[k])
        apportion(BASE, settlement.digest, members, c_to, c_from, to_grid[k], from_grid[k],
                  "prorata", key_w, tier)

    def verify_all() -> None:
        for msg in offer_msgs[1:]:
            verify_offer(msg, charter)
        for msg in result_msgs[1:]:
            open_envelope(msg, charter)

    timings = {
        "sign_ms": median_s(lambda: (sign(offers[0].body(), keys[ids[0]]),
                                     sign({"digest": settlement.digest}, keys[ids[0]])),
                            repeats) * 1e3,
        "verify_ms": median_s(verify_all, repeats) * 1e3,
        "settle_ms": median_s(lambda: settle(BASE, offers, "prorata", terms),
                              repeats) * 1e3,
        "apportion_ms": median_s(lambda: apportion_coop(0), repeats) * 1e3,
    }
    timings["interval_ms"] = sum(timings.values())
    timings["all_coops_apportion_ms"] = median_s(
        lambda: [apportion_coop(k) for k in range(coops)], max(1, repeats // 2)) * 1e3
    own = (publish_bytes(f"federation/{ids[0]}/offers/{BASE}", offer_msgs[0])
           + publish_bytes(f"federation/{ids[0]}/results/{BASE}", result_msgs[0]))
    received = sum(publish_bytes(f"federation/{c}/offers/{BASE}", m)
                   for c, m in zip(ids[1:], offer_msgs[1:], strict=True))
    received += sum(publish_bytes(f"federation/{c}/results/{BASE}", m)
                    for c, m in zip(ids[1:], result_msgs[1:], strict=True))
    request = sign({"kind": "request", "coop": ids[0], "want": [[BASE, [ids[1]], False]],
                    "seq": 2}, keys[ids[0]])
    return {
        "coops": coops, "households_per_coop": households, "members": coops * households,
        "rule": "prorata", "policy": "prorata",
        **{k: round(v, 3) for k, v in timings.items()},
        "interval_s": STEP,
        "fraction_of_interval": round(timings["interval_ms"] / (STEP * 1e3), 8),
        "bytes": {
            "offer_payload": len(offer_msgs[0]), "result_payload": len(result_msgs[0]),
            "published_per_coop": own,
            "received_per_coop": received,
            "bridge_out_per_coop": own * (coops - 1),
            "re_request_extra": publish_bytes(f"federation/{ids[0]}/requests", request)
            + publish_bytes(f"federation/{ids[1]}/offers/{BASE}", offer_msgs[1]),
        },
    }
