"""Signed messages between coops: offers per settlement interval and result hashes.

Every message is an envelope ``{"body": {...}, "sig": base64}``: the body
names its coop, its kind, its interval and a per-coop message number
``seq``; the signature is Ed25519 over the body's canonical JSON. A message
can be relayed by anyone (a signature does not care who carries it), so a
coop that missed an offer may get it from any peer that holds it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.federation.charter import Charter

#: Offers never exceed this many Wh in one interval (2 GWh), so the allocation's
#: integer products stay inside int64.
MAX_OFFER_WH = 2**31 - 1


class Rejected(Exception):
    """A message that is not counted; the message says why (unsigned, wrong key, lapsed...)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One coop's surplus and deficit after its own members shared, for one interval.

    ``metered_export_wh`` and ``metered_import_wh`` are the coop's metered grid
    totals for the interval: the allocation never counts more than them (``None``
    in offers built in memory by tests and benchmarks: not bounded).
    """

    coop: str
    interval: int
    surplus_wh: int
    deficit_wh: int
    seq: int
    metered_export_wh: int | None = None
    metered_import_wh: int | None = None

    def body(self) -> dict[str, object]:
        """The signed body."""
        body: dict[str, object] = {
            "kind": "offer", "coop": self.coop, "interval": self.interval,
            "surplus_wh": self.surplus_wh, "deficit_wh": self.deficit_wh, "seq": self.seq}
        if self.metered_export_wh is not None:
            body["metered_export_wh"] = self.metered_export_wh
            body["metered_import_wh"] = self.metered_import_wh
        return body

    def content(self) -> tuple[int, int, int | None, int | None]:
        """What the allocation uses: a re-sent offer with a new ``seq`` is the same offer."""
        return self.surplus_wh, self.deficit_wh, self.metered_export_wh, self.metered_import_wh


def canonical(body: dict[str, object]) -> bytes:
    """The bytes that are signed and hashed."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (keep the file mode 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key, as the charter lists it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The PEM private key at ``path``; raises ``ValueError`` naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read private key: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: expected an Ed25519 private key")
    return key


def sign(body: dict[str, object], key: Ed25519PrivateKey) -> bytes:
    """The envelope of ``body``, signed, as message bytes."""
    sig = base64.b64encode(key.sign(canonical(body))).decode()
    return json.dumps({"body": body, "sig": sig}, separators=(",", ":")).encode()


@lru_cache(maxsize=4096)
def _public_key(b64: str) -> Ed25519PublicKey:
    """The key object of a charter's base64 public key (parsed once, not per message)."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))


def open_envelope(payload: bytes, charter: Charter) -> dict[str, object]:
    """The verified body of a message; raises :class:`Rejected` saying why not."""
    try:
        # RecursionError: arrays nested past the stack (issue 18) must not end the reader.
        envelope = json.loads(payload)
        body, sig = envelope["body"], envelope.get("sig")
    except (ValueError, TypeError, KeyError, RecursionError):
        raise Rejected("not a federation envelope (expected JSON with body and sig)") from None
    if not isinstance(body, dict):
        raise Rejected("body: expected an object")
    coop = body.get("coop")
    member = charter.member(coop) if isinstance(coop, str) else None
    if member is None:
        raise Rejected(f"coop {coop!r} is not a member of the federation")
    if not sig:
        raise Rejected(f"unsigned message claiming to be from {coop!r}")
    try:
        signature = base64.b64decode(sig, validate=True)
        _public_key(member.public_key).verify(signature, canonical(body))
    except (binascii.Error, ValueError, TypeError, InvalidSignature):
        raise Rejected(f"bad signature: not signed by {coop!r}'s key in the charter") from None
    return body


def _whole(body: dict[str, object], name: str, high: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise Rejected(f"{name} = {value!r}: expected an integer from 0 to {high}")
    return value


def parse_offer(body: dict[str, object], charter: Charter) -> Offer:
    """An offer from a verified body; raises :class:`Rejected` naming the bad field."""
    if body.get("kind") != "offer":
        raise Rejected(f"kind = {body.get('kind')!r}: expected 'offer'")
    interval = _whole(body, "interval", 2**40)
    step = charter.federation.interval_s
    if interval % step:
        raise Rejected(f"interval = {interval}: not on a {step} s boundary")
    coop = str(body["coop"])
    terms = charter.terms(interval)
    if coop not in terms.active:
        raise Rejected(f"coop {coop!r}: membership lapsed before interval {interval}")
    # The charter's cap (connection power × interval, or lower) bounds every figure:
    # a fake deficit cannot take more than a real connection could have drawn.
    cap = min(terms.caps[coop], MAX_OFFER_WH)
    figures = {name: _whole(body, name, MAX_OFFER_WH) for name in (
        "surplus_wh", "deficit_wh", "metered_export_wh", "metered_import_wh")}
    for name, value in figures.items():
        if value > cap:
            raise Rejected(f"{name} = {value}: above {coop!r}'s cap of {cap} Wh per interval "
                           "in the charter")
    return Offer(coop, interval, figures["surplus_wh"], figures["deficit_wh"],
                 _whole(body, "seq", 2**62), figures["metered_export_wh"],
                 figures["metered_import_wh"])


def verify_offer(payload: bytes, charter: Charter) -> Offer:
    """A verified offer from message bytes; raises :class:`Rejected` saying why not."""
    return parse_offer(open_envelope(payload, charter), charter)


def offer_digest(offer: Offer) -> str:
    """Hash of what the allocation uses from an offer (not its ``seq``)."""
    text = f"{offer.coop}|{offer.interval}|{offer.surplus_wh}|{offer.deficit_wh}"
    if offer.metered_export_wh is not None:
        text += f"|{offer.metered_export_wh}|{offer.metered_import_wh}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def verify_proof(body: dict[str, object], charter: Charter) -> tuple[str, int, list[bytes]]:
    """``(accused, interval, [offer1, offer2])`` of a proof of equivocation, or :class:`Rejected`.

    A proof is two offers, each validly signed by the accused coop, for one
    interval, with different content. Anyone can check it with the charter
    alone, so it does not matter who forwards it.
    """
    raw = body.get("offers")
    if not isinstance(raw, list) or len(raw) != 2 or not all(isinstance(r, str) for r in raw):
        raise Rejected("proof: expected offers, a list of two signed offers")
    payloads = [r.encode() for r in raw]
    first, second = (verify_offer(p, charter) for p in payloads)
    if first.coop != second.coop or first.interval != second.interval:
        raise Rejected("proof: the two offers are not from one coop for one interval")
    if first.content() == second.content():
        raise Rejected("proof: the two offers say the same thing")
    return first.coop, first.interval, payloads
