"""The coop summary's figures over every member at once equal the per-member reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.accounts.running import member_figures, running_figures
from controller.ledger.schema import MEMBER_COLUMNS
from dispatch.metrics import jain_index

wh = st.integers(min_value=0, max_value=10**9)
member = st.fixed_dictionaries({f: st.one_of(st.none(), wh) if f.startswith("meter")
                                else wh for f in MEMBER_COLUMNS})


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from([f"h{i:02d}" for i in range(12)]), member, max_size=12),
       st.dictionaries(st.sampled_from(["h00", "h03", "h07"]),
                       st.fixed_dictionaries({"own_pv_used": wh, "shed": wh}), max_size=3),
       st.integers(min_value=0, max_value=10**6))
def test_running_figures_equal_the_per_member_reference(by_member: dict, unwritten: dict,
                                                        intervals: int) -> None:
    per_member, coop = running_figures(by_member, unwritten, intervals)
    totals: dict[str, int] = {}
    expected = {}
    for m, committed in by_member.items():
        sums = {k: v or 0 for k, v in committed.items()}
        for k, v in unwritten.get(m, {}).items():
            sums[k] = sums.get(k, 0) + v
        for k, v in sums.items():
            totals[k] = totals.get(k, 0) + v
        expected[m] = member_figures(sums | {"intervals": intervals})
    assert per_member == expected
    assert list(next(iter(per_member.values()))) == list(next(iter(expected.values()))) \
        if per_member else True
    reference = member_figures({k: totals.get(k, 0) for k in MEMBER_COLUMNS}
                               | {"intervals": intervals})
    reference["jain_fairness"] = jain_index(
        [f["self_sufficiency"] for f in expected.values() if f["self_sufficiency"] is not None])
    assert coop == reference
    # The same Wh handed as columns (a running controller's snapshot) give the same figures.
    fields = ("own_pv_used", "shed")
    ids = ("h00", "h03", "h07", "zz")  # "zz" is no member: left out, as a dict entry is
    wh = np.array([[unwritten.get(m, {}).get(f, 0) for m in ids] for f in fields],
                  dtype=np.int64)
    assert running_figures(by_member, {}, intervals, (fields, ids, wh)) == (per_member, coop)
