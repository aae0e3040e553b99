"""The whole ledger as open data: one CSV row per member and settlement interval.

Rows are streamed from the ledger (one interval's rows in memory at a time).
With ``pseudonymous``, members are named ``m-`` and the first 10 hex digits of
HMAC-SHA256(ledger salt, member id): stable for this ledger, but not
recomputable from a member id without the salt, which stays in the ledger's
``meta`` table. Within an interval rows are then ordered by pseudonym, so their
order does not give away the ids' order either.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Iterator
from typing import TextIO

from controller.accounts.figures import iso
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_COLUMNS
from controller.ledger.store import connect

HEADER = ("interval_start", "interval_end", "member", *MEMBER_COLUMNS)


def pseudonym(salt: str, member_id: str) -> str:
    """``m-`` + the first 10 hex digits of HMAC-SHA256(salt, member id)."""
    digest = hmac.new(salt.encode(), member_id.encode(), hashlib.sha256).hexdigest()
    return "m-" + digest[:10]


def pseudonym_salt(reader: LedgerReader) -> str:
    """The ledger's pseudonym salt (``meta`` key ``pseudonym_salt``)."""
    conn = connect(reader.path, readonly=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'pseudonym_salt'").fetchone()
    finally:
        conn.close()
    if row is None or not row[0]:
        raise LookupError(f"{reader.path}: the ledger has no pseudonym_salt; start the "
                          "controller once to add one")
    return str(row[0])


def _by_interval(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        if batch and row[0] != batch[0][0]:
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def export_csv(reader: LedgerReader, start: float | None, end: float | None,
               pseudonymous: bool, out: TextIO) -> int:
    """Write the intervals inside ``[start, end]`` as CSV to ``out``; return the data rows.

    Columns: :data:`HEADER`: the interval's start and end (ISO 8601 UTC), the
    member (id, or pseudonym), then every ledger column (integer Wh, seconds
    for ``*_s``; an empty cell where a meter has no counter).
    """
    names = None
    if pseudonymous:
        salt = pseudonym_salt(reader)
        names = {m: pseudonym(salt, m) for m, _ in reader.members()}
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    step, count = reader.step, 0
    for batch in _by_interval(reader.raw_rows(start, end)):
        start_ts = int(batch[0][0])
        begin, finish = iso(start_ts), iso(start_ts + step)
        rows = [(m if names is None else names[m], values) for _, m, *values in batch]
        if names is not None:
            rows.sort(key=lambda r: r[0])
        for member, values in rows:
            writer.writerow([begin, finish, member, *("" if v is None else v for v in values)])
        count += len(rows)
    return count
