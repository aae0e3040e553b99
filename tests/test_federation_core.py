"""The federation's pure core: charter, signed offers, the deterministic allocation."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.federation.allocation import allocate, settle
from controller.federation.charter import CharterError, parse_charter
from controller.federation.offers import (
    MAX_OFFER_WH,
    Offer,
    Rejected,
    generate_key,
    public_b64,
    sign,
    verify_offer,
)
from controller.federation.reconcile import Reconciler
from tests.federation_helpers import make_charter, make_keys, signed_offer

FAR_LATER = datetime(2199, 1, 1, tzinfo=UTC)
IDS = ["coop-a", "coop-b", "coop-c", "coop-d"]
wh = st.integers(min_value=0, max_value=MAX_OFFER_WH)
offers_st = st.lists(st.tuples(wh, wh), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(offers_st, st.sampled_from(["prorata", "equal"]))
def test_books_balance_and_respect_offers(pairs: list[tuple[int, int]], rule: str) -> None:
    surplus = np.array([s for s, _ in pairs], dtype=np.int64)
    deficit = np.array([d for _, d in pairs], dtype=np.int64)
    to_fed, from_fed = allocate(surplus, deficit, rule)
    assert int(to_fed.sum()) == int(from_fed.sum()) == min(int(surplus.sum()), int(deficit.sum()))
    assert (to_fed >= 0).all() and (to_fed <= surplus).all()
    assert (from_fed >= 0).all() and (from_fed <= deficit).all()


@settings(max_examples=100, deadline=None)
@given(offers_st, st.sampled_from(["prorata", "equal"]), st.randoms(use_true_random=False))
def test_every_coop_computes_the_same_hash(pairs: list[tuple[int, int]], rule: str,
                                           rnd: random.Random) -> None:
    offers = [Offer(f"coop-{k:03d}", 900, s, d, seq=k) for k, (s, d) in enumerate(pairs)]
    first = settle(900, offers, rule, "charter")
    for _ in range(3):  # another coop receives them in another order, with other seqs
        shuffled = [Offer(o.coop, o.interval, o.surplus_wh, o.deficit_wh, rnd.randint(0, 99))
                    for o in rnd.sample(offers, len(offers))]
        again = settle(900, shuffled, rule, "charter")
        assert again.digest == first.digest
        assert (again.to_federation == first.to_federation).all()
    if len(offers) > 1:
        changed = [*offers[:-1], Offer(offers[-1].coop, 900, offers[-1].surplus_wh + 1,
                                       offers[-1].deficit_wh, 0)]
        assert settle(900, changed, rule, "charter").digest != first.digest


def test_equal_rule_is_water_filling() -> None:
    to_fed, from_fed = allocate(np.array([1000, 0, 0]), np.array([0, 100, 5000]), "equal")
    assert to_fed.tolist() == [1000, 0, 0]
    assert from_fed.tolist() == [0, 100, 900]
    to_fed, from_fed = allocate(np.array([1000, 0, 0]), np.array([0, 100, 5000]), "prorata")
    assert from_fed.tolist() == [0, 20, 980]


def test_forged_and_unsigned_offers_are_rejected() -> None:
    keys = make_keys(IDS[:3])
    charter = make_charter(keys, "coop-a")
    offer = Offer("coop-b", 900, 500, 0, 1, 500, 0)
    assert verify_offer(signed_offer(keys["coop-b"], offer), charter) == offer
    with pytest.raises(Rejected, match="bad signature"):  # signed with another coop's key
        verify_offer(signed_offer(keys["coop-c"], offer), charter)
    with pytest.raises(Rejected, match="bad signature"):  # a stranger's key
        verify_offer(signed_offer(generate_key(), offer), charter)
    with pytest.raises(Rejected, match="unsigned"):
        verify_offer(json.dumps({"body": offer.body(), "sig": ""}).encode(), charter)
    with pytest.raises(Rejected, match="unsigned"):
        verify_offer(json.dumps({"body": offer.body()}).encode(), charter)
    tampered = signed_offer(keys["coop-b"], offer).replace(b'"surplus_wh":500',
                                                           b'"surplus_wh":900')
    with pytest.raises(Rejected, match="bad signature"):
        verify_offer(tampered, charter)
    with pytest.raises(Rejected, match="not a member"):
        verify_offer(signed_offer(keys["coop-b"], Offer("coop-z", 900, 1, 0, 1, 1, 0)),
                     charter)
    with pytest.raises(Rejected, match="surplus_wh"):
        verify_offer(sign({**offer.body(), "surplus_wh": -5}, keys["coop-b"]), charter)


def test_lapsed_member_is_excluded() -> None:
    keys = make_keys(IDS[:3])
    lapse = datetime.fromtimestamp(1800, UTC)
    charter = make_charter(keys, "coop-a", expires={"coop-c": lapse})
    assert charter.active(900) == ("coop-a", "coop-b", "coop-c")
    assert charter.active(1800) == ("coop-a", "coop-b")
    with pytest.raises(Rejected, match="lapsed"):
        verify_offer(signed_offer(keys["coop-c"], Offer("coop-c", 1800, 5, 0, 1, 5, 0)), charter)
    book = Reconciler(charter, "coop-a")
    for coop in ("coop-a", "coop-b"):
        book.add_offer(Offer(coop, 1800, 100 if coop == "coop-a" else 0, 50, 1))
    assert book.missing(1800) == ()  # nobody waits for the lapsed coop
    (settled,), _ = book.step_all(0.0)
    assert settled.coops == ("coop-a", "coop-b")
    assert settled.for_coop("coop-c") == (0, 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(IDS), wh, wh), min_size=1, max_size=30))
def test_reconciler_counts_each_interval_once(messages: list[tuple[str, int, int]]) -> None:
    keys = make_keys(IDS)
    book = Reconciler(make_charter(keys, "coop-a"), "coop-a")
    first: dict[str, tuple[int, int]] = {}
    for seq, (coop, s, d) in enumerate(messages):
        book.add_offer(Offer(coop, 900, s, d, seq))
        first.setdefault(coop, (s, d))
    changed, committed = book.step_all(0.0)  # before the deadline: provisional only
    assert len(changed) == (1 if set(first) == set(IDS) else 0) and committed == []
    assert book.step_all(0.0) == ([], [])  # nothing changes, nothing is committed alone
    for coop, (s, d) in first.items():  # a conflicting re-send never replaces an offer
        assert book.intervals[900].offers[coop].content()[:2] == (s, d)


def test_charter_errors_name_the_field(tmp_path) -> None:
    key = public_b64(generate_key())
    text = f"""
[federation]
name = "valley"
rule = "fair"
[self]
id = "coop-a"
private_key = "a.key"
[[members]]
id = "coop-a"
public_key = "{key}"
expires = 2027-01-01T00:00:00
"""
    with pytest.raises(CharterError) as err:
        parse_charter(text, "fed.toml")
    message = str(err.value)
    assert "federation.rule" in message and "members[0].expires" in message
    assert "time with its zone" in message


def test_different_results_are_disagreements() -> None:
    keys = make_keys(IDS[:2])
    prorata = Reconciler(make_charter(keys, "coop-a", rule="prorata"), "coop-a")
    equal = Reconciler(make_charter(keys, "coop-b", rule="equal"), "coop-b")
    offers = [Offer("coop-a", 900, 1000, 0, 1), Offer("coop-b", 900, 0, 400, 2)]
    for book in (prorata, equal):
        for offer in offers:
            book.add_offer(offer, b"x")
    (ours,), _ = prorata.step_all(0.0)
    (theirs,), _ = equal.step_all(0.0)
    assert ours.digest != theirs.digest  # the charters differ, so the hashes do
    prorata.add_result("coop-b", 900, theirs.digest, theirs.counted, 1)
    assert prorata.step_all(0.0) == ([], [])  # never committed while the hashes differ
    assert not prorata.agreed(900) and prorata.last_agreed() is None
    # after the deadline a quorum of 2 out of 2 is still needed: nothing is committed
    assert prorata.step_all(1e12) == ([], [])
    # an equivocating coop: a second, different offer for the same interval is a proof
    assert prorata.add_offer(Offer("coop-b", 900, 0, 999, 3), b"y") == "conflict"
    assert prorata.disagreements[-1].what == "offer"
    assert prorata.intervals[900].proofs["coop-b"] == (b"x", b"y")


def test_forgotten_intervals_are_never_reopened() -> None:
    keys = make_keys(IDS[:2])
    book = Reconciler(make_charter(keys, "coop-a"), "coop-a")
    for coop in IDS[:2]:
        book.add_offer(Offer(coop, 900, 10, 0, 1))
    (ours,), _ = book.step_all(0.0)
    book.add_result("coop-b", 900, ours.digest, ours.counted, 1)
    assert book.step_all(0.0) == ([], [ours])  # both hashes identical: committed
    assert book.add_offer(Offer("coop-a", 900, 11, 0, 2)) == "late"  # never reopened
    book.forget_before(1800)
    assert book.add_offer(Offer("coop-a", 900, 10, 0, 2)) == "late"
    book.add_result("coop-b", 900, "x")
    assert 900 not in book.intervals and book.step_all(0.0) == ([], [])


def test_charter_changes_take_effect_from_their_interval() -> None:
    from controller.federation.charter import Charter

    keys = make_keys(IDS[:2])
    old = make_charter(keys, "coop-a")
    renewed = make_charter(keys, "coop-b", expires={c: FAR_LATER for c in IDS[:2]})
    data = renewed.model_dump(by_alias=True)
    data["federation"]["amendments"] = [{"from": 9000, "rule": "equal",
                                         "caps": {"coop-a": 5000}}]
    amended = Charter.model_validate(data)
    # A renewal changes nothing for intervals both charters cover, nor does an amendment
    # before its interval: coops that update at different times agree until then.
    for interval in (900, 8100):
        assert old.terms(interval).digest() == amended.terms(interval).digest()
    assert amended.terms(9000).rule == "equal" and amended.terms(9000).caps["coop-a"] == 5000
    assert old.terms(9000).digest() != amended.terms(9000).digest()
    assert old.terms(900).caps["coop-a"] == 10_000  # 40 kW × 900 s
    with pytest.raises(Exception, match="interval boundary"):
        Charter.model_validate(data | {"federation": data["federation"] | {
            "amendments": [{"from": 9001}]}})
    with pytest.raises(Rejected, match="cap of 5000 Wh"):
        verify_offer(signed_offer(keys["coop-a"], Offer("coop-a", 9000, 6000, 0, 1, 6000, 0)),
                     amended)


def test_coop_that_learns_of_a_proof_late_follows_the_committed_quorum() -> None:
    """a and b committed with c's first offer; d then sees c's second and holds the proof."""
    keys = make_keys(IDS)
    d = Reconciler(make_charter(keys, "coop-d"), "coop-d")
    first = Offer("coop-c", 900, 0, 500, 1, 0, 500)
    second = Offer("coop-c", 900, 0, 900, 2, 0, 900)
    others = [Offer("coop-a", 900, 800, 0, 1), Offer("coop-b", 900, 0, 100, 1),
              Offer("coop-d", 900, 0, 200, 1)]
    committed = settle(900, [*others, first], "prorata",
                       make_charter(keys, "coop-a").terms(900).digest())
    for offer in [*others, first]:
        d.add_offer(offer, f"{offer.coop}-{offer.seq}".encode())
    assert d.add_offer(second, b"coop-c-2") == "conflict"  # too late for a and b
    for coop in ("coop-a", "coop-b", "coop-c"):
        d.add_result(coop, 900, committed.digest, committed.counted, 1)
    (ours,), none = d.step_all(0.0)
    assert ours.counted["coop-c"] == "equivocated" and none == []  # it disagrees at first
    # After the deadline the others (a majority of those that did not equivocate) win.
    changed, (final,) = d.step_all(1e12)
    assert final.digest == committed.digest and changed == [final]
