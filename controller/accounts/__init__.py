"""Accounts from the ledger: statements, the coop report, the budget and open data.

* :mod:`~controller.accounts.figures`: figures of a period from ledger sums, drift;
* :mod:`~controller.accounts.statement`: one member's month (text, CSV, JSON);
* :mod:`~controller.accounts.report`: the coop's month (text, JSON);
* :mod:`~controller.accounts.budget`: money in integer cents, balanced to the cent;
* :mod:`~controller.accounts.export`: the whole ledger as CSV, optionally pseudonymous.
"""

from controller.accounts.budget import Budget, MemberMoney, month_budget
from controller.accounts.export import export_csv, pseudonym
from controller.accounts.figures import (
    AccountsInputError,
    UnknownMemberError,
    figures,
    parse_month,
    parse_time,
)
from controller.accounts.report import CoopReport, coop_report, report_dict
from controller.accounts.statement import Statement, member_statement, statement_dict

__all__ = [
    "AccountsInputError",
    "Budget",
    "CoopReport",
    "MemberMoney",
    "Statement",
    "UnknownMemberError",
    "coop_report",
    "export_csv",
    "figures",
    "member_statement",
    "month_budget",
    "parse_month",
    "parse_time",
    "pseudonym",
    "report_dict",
    "statement_dict",
]
