"""The month's money, in integer cents, balanced to the cent.

With a ``[tariff]``, members settle among themselves at ``peer_price_per_kwh``:

* ``peers``: a member pays for ``from_peers``; the giver earns for ``to_peers``;
* ``coop_battery``: a member pays for ``from_coop_battery``; the battery's owner
  earns for ``battery_to_coop``;
* ``storage``: a member earns for its PV put into a neighbour's battery
  (``to_coop_battery``); the battery's owner pays for it (``battery_from_coop``).

Each of these is priced once for the whole coop, from the receiving side's Wh
(the ledger books both sides of a pair to the same Wh in every interval), and
the cents are shared out by largest remainder on each side, so what members
pay each other sums exactly to what members earn. A coop fee of
``coop_fee_per_kwh`` on what members receive from peers and coop batteries
goes to the coop's fund, shared out the same way. The grid is with the
utility: import ``(from_grid + grid_to_battery) x grid_import_per_kwh`` and
export ``to_grid x grid_export_per_kwh``, per member. Energy a meter counted
during gaps (``unallocated_*``) is not priced here: it is on the utility's bill.

Wear: the owner of a battery with a wear price (its ``price``, see
:attr:`~controller.config.DeviceConfig.wear_per_kwh`) earns from the coop's fund
``battery_to_coop x wear_per_kwh``: what neighbours' use of the battery wore it. The
fund is the fees less this wear, so members' nets and the fund still sum to zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from controller.accounts.figures import Sums
from controller.config import TariffConfig

#: kind → (receiving field, giving field). Receivers pay the giving side.
TRANSFERS: dict[str, tuple[str, str]] = {
    "peers": ("from_peers", "to_peers"),
    "coop_battery": ("from_coop_battery", "battery_to_coop"),
    "storage": ("battery_from_coop", "to_coop_battery"),
}
#: What the coop fee is charged on (what a member consumes from others).
FEE_FIELDS = ("from_peers", "from_coop_battery")


def cents_for(wh: int, price_per_kwh: float) -> int:
    """The price of ``wh`` Wh in whole cents, exact and rounded half up.

    The price is taken as written in the config (``0.1`` is a tenth, not the
    nearest binary float).
    """
    exact = Fraction(int(wh)) * Fraction(Decimal(str(price_per_kwh))) / 10
    return math.floor(exact + Fraction(1, 2))


def largest_remainder(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Share ``total`` cents in proportion to ``weights``, summing exactly to ``total``.

    Every key gets the floor of its exact share; the cents left go one each to
    the largest remainders (ties by key), so nobody is ever more than one cent
    from the exact share, and a zero weight gets zero.
    """
    out = dict.fromkeys(weights, 0)
    if total == 0:
        return out
    whole = sum(weights.values())
    if total < 0 or whole <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"cannot share {total} cents over weights summing to {whole}")
    remainders = {}
    for k, w in weights.items():
        out[k], remainders[k] = divmod(total * w, whole)
    left = total - sum(out.values())
    for k in sorted(weights, key=lambda k: (-remainders[k], k))[:left]:
        out[k] += 1
    return out


@dataclass(frozen=True, slots=True)
class MemberMoney:
    """One member's money lines for the month, in cents."""

    paid: dict[str, int]
    earned: dict[str, int]
    coop_fee: int
    grid_import: int
    grid_export: int
    #: Paid by the coop's fund for neighbours' use of the member's battery (its wear).
    wear: int = 0

    @property
    def net_between_members(self) -> int:
        """Earned from members, less paid to members, less the coop fee, plus wear earned
        from the coop's fund."""
        return sum(self.earned.values()) - sum(self.paid.values()) - self.coop_fee + self.wear

    @property
    def net(self) -> int:
        """Everything: between members, plus export revenue, less the import bill."""
        return self.net_between_members + self.grid_export - self.grid_import

    def as_dict(self) -> dict[str, int]:
        """Flat published form: ``paid_<kind>_cents``, ``earned_<kind>_cents``, ..."""
        return {**{f"paid_{k}_cents": v for k, v in self.paid.items()},
                **{f"earned_{k}_cents": v for k, v in self.earned.items()},
                "coop_fee_cents": self.coop_fee, "earned_wear_cents": self.wear,
                "grid_import_cents": self.grid_import,
                "grid_export_cents": self.grid_export,
                "net_between_members_cents": self.net_between_members,
                "net_cents": self.net}


@dataclass(frozen=True, slots=True)
class Budget:
    """The coop's money for one month, in cents of ``currency``."""

    currency: str
    members: dict[str, MemberMoney]
    flowed: dict[str, int]
    fund: int

    @property
    def flowed_between_members(self) -> int:
        """What members paid each other (= what members earned), all kinds."""
        return sum(self.flowed.values())

    @property
    def wear_paid(self) -> int:
        """What the fund paid battery owners for their batteries' wear."""
        return sum(m.wear for m in self.members.values())

    @property
    def paid_to_utility(self) -> int:
        """Members' grid import bills."""
        return sum(m.grid_import for m in self.members.values())

    @property
    def received_from_utility(self) -> int:
        """Members' grid export revenue."""
        return sum(m.grid_export for m in self.members.values())

    def imbalances(self) -> list[str]:
        """What does not balance to the cent (empty when the books balance)."""
        problems = []
        for kind, total in self.flowed.items():
            paid = sum(m.paid[kind] for m in self.members.values())
            earned = sum(m.earned[kind] for m in self.members.values())
            if not paid == earned == total:
                problems.append(f"{kind}: paid {paid}, earned {earned}, priced {total}")
        fees = sum(m.coop_fee for m in self.members.values())
        if fees - self.wear_paid != self.fund:
            problems.append(f"coop fund {self.fund} but fees paid {fees} less wear "
                            f"{self.wear_paid}")
        net = sum(m.net_between_members for m in self.members.values())
        if net + self.fund != 0:
            problems.append(f"members' nets between them {net} + fund {self.fund} != 0")
        return problems

    def as_dict(self) -> dict[str, object]:
        """Published form of the coop's budget (members' lines under ``members``)."""
        return {"currency": self.currency,
                "flowed_between_members_cents": self.flowed_between_members,
                "flowed_by_kind_cents": dict(self.flowed),
                "paid_to_utility_cents": self.paid_to_utility,
                "received_from_utility_cents": self.received_from_utility,
                "coop_fund_cents": self.fund,
                "wear_paid_to_owners_cents": self.wear_paid,
                "balanced": not self.imbalances(),
                "members": {m: money.as_dict() for m, money in self.members.items()}}


def _wh(sums: Sums, *fields: str) -> int:
    return sum(int(sums.get(f) or 0) for f in fields)


def month_budget(by_member: Mapping[str, Sums], tariff: TariffConfig,
                 wear_per_kwh: Mapping[str, float] | None = None) -> Budget:
    """Every member's money and the coop's totals from one month's sums per member.

    ``by_member`` must hold every member of the coop (as
    :meth:`~controller.ledger.LedgerReader.totals_by_member` returns), so that
    the paired flows add up. ``wear_per_kwh``: battery owners' wear prices
    (:func:`~controller.config_tariff.wear_prices`); none: no wear is paid.
    """
    ids = sorted(by_member)
    paid: dict[str, dict[str, int]] = {m: {} for m in ids}
    earned: dict[str, dict[str, int]] = {m: {} for m in ids}
    flowed: dict[str, int] = {}
    for kind, (receiving, giving) in TRANSFERS.items():
        received = {m: _wh(by_member[m], receiving) for m in ids}
        given = {m: _wh(by_member[m], giving) for m in ids}
        total = cents_for(sum(received.values()), tariff.peer_price_per_kwh)
        if total and not sum(given.values()):
            raise ValueError(f"the ledger books {sum(received.values())} Wh of {receiving} "
                             f"but no {giving}: the pairs do not match")
        flowed[kind] = total
        for m, cents in largest_remainder(total, received).items():
            paid[m][kind] = cents
        for m, cents in largest_remainder(total, given).items():
            earned[m][kind] = cents
    fee_wh = {m: _wh(by_member[m], *FEE_FIELDS) for m in ids}
    fund = cents_for(sum(fee_wh.values()), tariff.coop_fee_per_kwh)
    fees = largest_remainder(fund, fee_wh)
    members = {
        m: MemberMoney(
            paid[m], earned[m], fees[m],
            cents_for(_wh(by_member[m], "from_grid", "grid_to_battery"),
                      tariff.grid_import_per_kwh),
            cents_for(_wh(by_member[m], "to_grid"), tariff.grid_export_per_kwh),
            cents_for(_wh(by_member[m], "battery_to_coop"), (wear_per_kwh or {}).get(m, 0.0)))
        for m in ids
    }
    return Budget(tariff.currency, members, flowed,
                  fund - sum(x.wear for x in members.values()))


def money(cents: int, currency: str) -> str:
    """``-12.34 EUR`` from cents (two decimals)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d} {currency}"
