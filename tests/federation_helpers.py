"""Charters, keys and offers for federation tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.federation.charter import Charter
from controller.federation.offers import Offer, generate_key, private_pem, public_b64, sign

FAR = datetime(2099, 1, 1, tzinfo=UTC)


def make_keys(ids: list[str]) -> dict[str, Ed25519PrivateKey]:
    """A fresh Ed25519 key per coop."""
    return {c: generate_key() for c in ids}


def make_charter(keys: dict[str, Ed25519PrivateKey], me: str, rule: str = "prorata",
                 expires: dict[str, datetime] | None = None, key_dir: Path | None = None,
                 broker: str = "127.0.0.1:1883", interval_s: int = 900,
                 connection_kw: dict[str, float] | None = None, deadline_s: int | None = None,
                 quorum: int | None = None, state: Path | None = None) -> Charter:
    """The charter as coop ``me`` holds it (its own key written to ``key_dir`` if given).

    Each coop's connection is 40 kW unless ``connection_kw`` says otherwise (at 900 s
    intervals: a cap of 10,000 Wh per interval).
    """
    connection_kw = connection_kw or {}
    expires = expires or {}
    key_path = Path("unused.key")
    if key_dir is not None:
        key_path = key_dir / f"{me}.key"
        key_path.write_bytes(private_pem(keys[me]))
    return Charter.model_validate({
        "federation": {"name": "valley", "rule": rule, "interval_s": interval_s,
                       "deadline_s": deadline_s, "quorum": quorum},
        "self": {"id": me, "private_key": str(key_path), "broker": broker,
                 "state": str(state) if state else None},
        "members": [{"id": c, "public_key": public_b64(k), "expires": expires.get(c, FAR),
                     "connection_kw": connection_kw.get(c, 40.0)}
                    for c, k in keys.items()],
    })


def signed_offer(key: Ed25519PrivateKey, offer: Offer) -> bytes:
    """The message bytes of ``offer`` signed with ``key``."""
    return sign(offer.body(), key)


def charter_toml(charter: Charter) -> str:
    """The TOML text of ``charter`` (as a coop would write it by hand)."""
    lines = ["[federation]", f'name = "{charter.federation.name}"',
             f'rule = "{charter.federation.rule}"',
             f"interval_s = {charter.federation.interval_s}", "", "[self]",
             f'id = "{charter.self_.id}"', f'private_key = "{charter.self_.private_key}"',
             f'broker = "{charter.self_.broker}"']
    for name in ("state", "username", "password_file", "tls_ca"):
        if getattr(charter.self_, name) is not None:
            lines.append(f'{name} = "{getattr(charter.self_, name)}"')
    for m in charter.members:
        lines += ["", "[[members]]", f'id = "{m.id}"', f'public_key = "{m.public_key}"',
                  f"expires = {m.expires.isoformat()}", f"connection_kw = {m.connection_kw}"]
        if m.broker:
            lines.append(f'broker = "{m.broker}"')
    return "\n".join(lines) + "\n"


def commit_interval(writer, member_ids: tuple[str, ...], start: int, step: int,
                    to_grid: list[int], from_grid: list[int]):
    """Commit an interval in which only the members' grid flows are booked; return it."""
    import numpy as np

    from controller.ledger import CommittedInterval
    from controller.ledger.accumulator import ROW
    from controller.ledger.schema import INTERVAL_COUNTS, MEMBER_COLUMNS

    values = np.zeros((len(MEMBER_COLUMNS), len(member_ids)), dtype=np.int64)
    values[ROW["to_grid"]] = to_grid
    values[ROW["from_grid"]] = from_grid
    counts = dict.fromkeys(INTERVAL_COUNTS, 0) | {"cycles": 1, "covered_s": step}
    interval = CommittedInterval(start, start + step, member_ids, values,
                                 np.zeros(len(member_ids), dtype=bool), counts, ())
    writer.commit(interval, {})
    return interval
