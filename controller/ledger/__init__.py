"""The energy ledger: where every Wh is booked, kept for years, and read back.

* :mod:`~controller.ledger.book`: each cycle's energy into its settlement interval;
* :mod:`~controller.ledger.accumulator`: the open interval, whole Wh at its end;
* :mod:`~controller.ledger.writer`: the writer thread (single writer, never on the loop);
* :mod:`~controller.ledger.store`: the SQL of a commit and its rollups;
* :mod:`~controller.ledger.reader`: totals from rollups, series, raw rows;
* :mod:`~controller.ledger.federation_rows`: members' shares of federation settlements;
* :mod:`~controller.ledger.periods`: settlement intervals and rollup periods (UTC);
* :mod:`~controller.ledger.schema` and :mod:`~controller.ledger.migrate`: tables, upgrade.
"""

from controller.ledger.accumulator import CommittedInterval
from controller.ledger.book import CycleEnergy, IntervalBook
from controller.ledger.lock import LedgerLockedError
from controller.ledger.periods import SETTLEMENT_STEPS
from controller.ledger.reader import LedgerMissingError, LedgerReader
from controller.ledger.store import LedgerSchemaError
from controller.ledger.writer import LedgerWriter

__all__ = [
    "SETTLEMENT_STEPS",
    "CommittedInterval",
    "CycleEnergy",
    "IntervalBook",
    "LedgerLockedError",
    "LedgerMissingError",
    "LedgerReader",
    "LedgerSchemaError",
    "LedgerWriter",
]
