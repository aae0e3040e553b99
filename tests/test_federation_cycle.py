"""The real controller in a federation: it offers each committed interval and books its share."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from controller.federation.transport import FederationNode
from controller.ledger import LedgerReader
from tests.coop_harness import start_harness
from tests.federation_helpers import charter_toml, make_charter, make_keys


def test_controller_offers_committed_intervals_and_books_its_share(tmp_path: Path,
                                                                   mosquitto: int) -> None:
    keys = make_keys(["coop-a", "coop-b"])
    broker = f"127.0.0.1:{mosquitto}"
    charter_a = make_charter(keys, "coop-a", key_dir=tmp_path, broker=broker)
    path_a = tmp_path / "federation.toml"
    path_a.write_text(charter_toml(charter_a))
    # coop-b: a neighbour that needs far more than coop-a can spare, on the same broker.
    peer = FederationNode(make_charter(keys, "coop-b", key_dir=tmp_path, broker=broker),
                          tick_s=0.1)
    peer.start()

    async def scenario() -> tuple[int, dict, list]:
        harness = await start_harness(tmp_path, households=6, start_hour=11.75, dt_s=30.0,
                                      **{"[controller]": f'[federation]\ncharter = "{path_a}"'
                                                         "\n\n[controller]"})
        try:
            fed = harness.controller.federation
            assert fed is not None
            committed = []
            while not committed:
                report = await harness.step()
                committed += report.committed
            interval = committed[0]
            peer.publish_offer(interval.start_ts, 0, 10_000)  # its cap: 40 kW × 900 s
            deadline = time.monotonic() + 15
            while interval.start_ts not in fed.booked and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert fed.booked == [interval.start_ts]
            assert harness.controller.writer.flush()
            reader = LedgerReader(harness.config.storage.ledger)
            return interval.start_ts, reader.federation_by_member(), [
                (m, int(t), int(f)) for m, t, f in zip(
                    interval.member_ids, interval.column("to_grid"),
                    interval.column("from_grid"), strict=True)]
        finally:
            await harness.close()

    try:
        start, shares, flows = asyncio.run(scenario())
    finally:
        peer.stop()
    exported = sum(t for _, t, _ in flows)
    assert exported > 0  # noon: the coop had surplus left after its members shared
    # All of it went to coop-b (which needed more): the members' to_federation is their
    # whole export, and nothing came back.
    assert sum(s["to_federation"] for s in shares.values()) == exported
    assert all(shares[m]["to_federation"] <= t for m, t, _ in flows)
    assert sum(s["from_federation"] for s in shares.values()) == 0
    settled = peer.book.intervals[start].settlement
    assert settled is not None and settled.for_coop("coop-b") == (0, exported)
