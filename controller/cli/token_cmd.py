"""``commonwatt token``, ``commonwatt rotate`` and ``commonwatt audit``: mandates.

``token create CONFIG --role ROLE [--member ID] [--expires 30d] [--label TEXT] [--link]``
makes a token and prints it as the last line of its output (shown once: only
its hash is kept, in ``tokens.sqlite`` beside the ledger). ``--link`` also
prints a one-time login link for the web pages. ``token list CONFIG`` prints
one token a line: id, role, member, label, expiry, state. ``token revoke
CONFIG ID`` ends a token at once, also while the controller runs.

``rotate announce CONFIG --role coordinator --candidates a,b,c`` commits to a
draw by lot in the audit log; ``rotate draw CONFIG --role coordinator``, once
the announced interval has closed, draws (:mod:`controller.governance.rotation`),
revokes the one in office and prints the new token last.

``audit verify CONFIG [--head HASH]`` recomputes the audit log's hash chain
(exit 1 when a row was deleted or edited); ``audit draw CONFIG SEQ`` recomputes
a rotation's draw from the ledger and checks it against its announcement;
``audit show CONFIG`` prints the log.

Every token made, refused or revoked is written to the audit log under the
name of the user running the command.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from controller.cli.common import load_or_report


def _duration(text: str) -> float:
    from controller.governance.tokens import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``token``, ``rotate`` and ``audit`` to the top-level subparsers."""
    token = sub.add_parser("token", help="access tokens for the API and the web pages")
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token; it is printed last, once")
    create.add_argument("config", type=Path)
    create.add_argument("--role", required=True, choices=["member", "installer", "coordinator"])
    create.add_argument("--member", metavar="ID", help="the member of a member token")
    create.add_argument("--expires", type=_duration, metavar="DURATION",
                        help="lifetime: a number and s, m, h or d (default and maximum: "
                        "[governance] token_max_days, coordinator_max_days for coordinators)")
    create.add_argument("--label", help="who holds it (default: the member id, else the "
                        "role); coordinator terms are counted by label")
    create.add_argument("--link", nargs="?", const="", metavar="BASE_URL",
                        help="also print a one-time web login link (valid 15 minutes), on "
                        "BASE_URL (default: the config's [api] host and port)")
    create.set_defaults(func=create_command)

    listing = actions.add_parser("list", help="every token: id, role, member, label, expiry, "
                                 "state")
    listing.add_argument("config", type=Path)
    listing.set_defaults(func=list_command)

    revoke = actions.add_parser("revoke", help="end a token at once")
    revoke.add_argument("config", type=Path)
    revoke.add_argument("id")
    revoke.set_defaults(func=revoke_command)

    rotate = sub.add_parser("rotate", help="the next coordinator by lot: announce, then draw")
    steps = rotate.add_subparsers(dest="rotate_command", metavar="STEP", required=True)
    announce = steps.add_parser("announce", help="commit to a draw: candidates, rules and "
                                "the deciding interval, in the audit log")
    announce.add_argument("config", type=Path)
    announce.add_argument("--role", required=True, choices=["coordinator", "installer"])
    announce.add_argument("--candidates", required=True, type=_names, metavar="A,B,C",
                          help="the labels drawn from")
    announce.set_defaults(func=announce_command)
    drawing = steps.add_parser("draw", help="draw the announced rotation (once the deciding "
                               "interval is committed) and hand over")
    drawing.add_argument("config", type=Path)
    drawing.add_argument("--role", required=True, choices=["coordinator", "installer"])
    drawing.add_argument("--expires", type=_duration, metavar="DURATION",
                         help="the new mandate's length (default: the longest allowed)")
    drawing.set_defaults(func=rotate_command)

    audit = sub.add_parser("audit", help="the audit log: check or print it")
    audit_actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_actions.add_parser("verify", help="recompute the hash chain (exit 1 if "
                                      "broken)")
    verify.add_argument("config", type=Path)
    verify.add_argument("--head", metavar="HASH", help="a head hash noted earlier")
    verify.set_defaults(func=verify_command)
    check = audit_actions.add_parser("draw", help="recompute a recorded rotation draw from "
                                     "the ledger (exit 1 if it does not match)")
    check.add_argument("config", type=Path)
    check.add_argument("seq", type=int, help="the audit row of the draw (action 'rotate')")
    check.set_defaults(func=draw_command)
    show = audit_actions.add_parser("show", help="print the audit log, one JSON row a line")
    show.add_argument("config", type=Path)
    show.set_defaults(func=show_command)


def _user() -> str:
    """Who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli:unknown"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open(path: Path, command: str):  # noqa: ANN202 - (config, the governance books) or None
    """The config and the tokens and audit log beside its ledger, or ``None`` after saying
    why not: a config pointing where no ledger is would put tokens the controller never
    reads (``[storage] ledger`` is relative to the config file)."""
    from controller.governance import AuditLog, TokenStore

    config = load_or_report(path)
    if config is None:
        return None
    ledger = config.storage.ledger
    if not ledger.is_file():
        print(f"{command}: [storage] ledger = {ledger}: no ledger there; start the controller "
              f"on {path} first (commonwatt run), or fix the path in {path}", file=sys.stderr)
        return None
    print(f"{command}: ledger {ledger}", file=sys.stderr)
    return config, SimpleNamespace(store=TokenStore.beside(ledger),
                                   audit=AuditLog.beside(ledger))


def create_command(args: argparse.Namespace) -> int:
    """Make a token (0), or say why not (2)."""
    from controller.governance import MandateError, issue

    opened = _open(args.config, "token create")
    if opened is None:
        return 2
    config, auth = opened
    ids = {m.id for m in config.members}
    if args.role == "member" and args.member not in ids:
        print(f"token create: a member token needs --member, one of: {', '.join(sorted(ids))}",
              file=sys.stderr)
        return 2
    if args.role != "member" and args.member is not None:
        print("token create: --member is only for --role member", file=sys.stderr)
        return 2
    # Unlabelled coordinator tokens share the label "coordinator", so they count as one
    # holder's terms: a mandate with no name cannot dodge the term limit.
    label = args.label or args.member or args.role
    try:
        token, secret = issue(auth.store, auth.audit, config.governance, role=args.role,
                              member=args.member, label=label, lifetime_s=args.expires,
                              by=_user())
    except MandateError as exc:
        print(f"token create: refused: {exc}", file=sys.stderr)
        return 2
    print(f"token {token.id}: {token.role}{' of ' + token.member if token.member else ''}, "
          f"label {token.label!r}, expires {_iso(token.expires_ts)}")
    print("Send it as 'Authorization: Bearer <token>', or paste it at /login. It is shown "
          "only now.")
    if args.link is not None:
        from controller.governance.tokens import ONCE_TTL_S

        code = auth.store.add_secret(token.id, "once", ONCE_TTL_S)
        base = args.link.rstrip("/") or f"http://{config.api.host}:{config.api.port}"
        print(f"one-time login link (15 min): {base}/login?once={code}")
    print(secret)
    return 0


def list_command(args: argparse.Namespace) -> int:
    """One token a line: id, role, member, label, expiry, state."""
    opened = _open(args.config, "token list")
    if opened is None:
        return 2
    _, auth = opened
    now = time.time()
    for t in auth.store.all():
        print(f"{t.id}  {t.role:<11}  {t.member or '-':<12}  {t.label!r:<20}  "
              f"{_iso(t.expires_ts)}  {t.state(now)}")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    """Revoke a token (0); 1 if already revoked, 2 if unknown."""
    from controller.governance import TokenError

    opened = _open(args.config, "token revoke")
    if opened is None:
        return 2
    _, auth = opened
    try:
        token = auth.store.revoke(args.id)
    except KeyError:
        print(f"token revoke: no token with id {args.id!r} (see 'token list')", file=sys.stderr)
        return 2
    except TokenError as exc:
        print(f"token revoke: {exc}", file=sys.stderr)
        return 1
    auth.audit.append(_user(), "cli", "token.revoke", {"id": token.id, "role": token.role,
                                                       "member": token.member,
                                                       "label": token.label}, "done")
    print(f"token {token.id} ({token.role}, {token.label!r}) revoked")
    return 0


def announce_command(args: argparse.Namespace) -> int:
    """Announce a draw (0); refused (1); bad input (2)."""
    from controller.governance.rotation import RotationRefused, announce

    opened = _open(args.config, "rotate announce")
    if opened is None:
        return 2
    config, auth = opened
    from controller.ledger import LedgerMissingError, LedgerReader

    try:  # the ledger's own step (a ledger keeps the one it was made with), else the config's
        step = LedgerReader(config.storage.ledger).step
    except (LedgerMissingError, OSError):
        step = config.ledger.settlement_s
    try:
        a = announce(step, auth.store, auth.audit, config.governance,
                     args.role, args.candidates, _user())
    except RotationRefused as exc:
        print(f"rotate announce: refused: {exc}", file=sys.stderr)
        return 1
    print(f"announced (audit row {a.seq}, hash {a.hash}): {args.role} drawn among "
          f"{', '.join(a.eligible)}")
    print(f"  deciding interval: the first committed from {_iso(a.decide_from)}; draw with "
          f"'rotate draw' once it has closed")
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    """Draw the announced rotation, hand over, print the new token last (0); refused (1);
    bad input (2)."""
    from controller.governance import MandateError
    from controller.governance.rotation import RotationRefused, rotate
    from controller.ledger import LedgerMissingError, LedgerReader

    opened = _open(args.config, "rotate")
    if opened is None:
        return 2
    config, auth = opened
    try:
        reader = LedgerReader(config.storage.ledger)
        chosen, token, secret = rotate(reader, auth.store, auth.audit, config.governance,
                                       args.role, _user(), lifetime_s=args.expires)
    except (LedgerMissingError, LookupError, MandateError) as exc:
        print(f"rotate draw: {exc}", file=sys.stderr)
        return 2
    except RotationRefused as exc:
        print(f"rotate draw: refused: {exc}", file=sys.stderr)
        return 1
    print(f"draw among {', '.join(chosen.candidates)}")
    print(f"  deciding interval {_iso(chosen.interval_start)}: sha256 "
          f"{chosen.interval_digest}")
    print(f"  seed {chosen.seed}")
    print(f"  drawn: {chosen.winner} (seed mod {len(chosen.candidates)}, candidates sorted)")
    print(f"token {token.id}: {token.role}, label {token.label!r}, expires "
          f"{_iso(token.expires_ts)}")
    print(secret)
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """0 when the chain holds, 1 naming each broken row."""
    opened = _open(args.config, "audit verify")
    if opened is None:
        return 2
    verdict = opened[1].audit.verify(args.head)
    for problem in verdict.problems:
        print(problem)
    print(f"audit log: {verdict.rows} rows, head {verdict.head}: "
          f"{'OK' if verdict.ok else 'BROKEN'}")
    return 0 if verdict.ok else 1


def show_command(args: argparse.Namespace) -> int:
    """Every audit row, one JSON object a line."""
    opened = _open(args.config, "audit show")
    if opened is None:
        return 2
    after = 0
    while rows := opened[1].audit.rows(after, 1000):
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        after = rows[-1]["seq"]
    return 0


def draw_command(args: argparse.Namespace) -> int:
    """Recompute a draw from the ledger and its announcement (0 if every check holds)."""
    from controller.governance.rotation import Announcement, RotationRefused, reveal
    from controller.ledger import LedgerMissingError, LedgerReader

    opened = _open(args.config, "audit draw")
    if opened is None:
        return 2
    config, auth = opened
    row = next(iter(auth.audit.rows(args.seq - 1, 1)), None)
    if row is None or row["seq"] != args.seq or row["action"] != "rotate":
        print(f"audit draw: row {args.seq} is not a rotation draw", file=sys.stderr)
        return 2
    recorded = json.loads(row["detail"])
    if "seed" not in recorded:
        print(f"audit draw: row {args.seq} is a refused rotation: no draw", file=sys.stderr)
        return 2
    if "announcement_seq" not in recorded:
        print("announcement: NONE: a draw from before commit-then-reveal, which the time "
              "of running it could steer")
        return 1
    seq = int(recorded["announcement_seq"])
    announced = next(iter(auth.audit.rows(seq - 1, 1)), None)
    if announced is None or announced["seq"] != seq or announced["action"] != "rotate.announce":
        print(f"announcement: row {seq} is not an announcement: DOES NOT MATCH")
        return 1
    a = Announcement.of(announced)
    earlier = [r["seq"] for r in auth.audit.rows(seq, args.seq - seq - 1)
               if r["action"] == "rotate"
               and json.loads(r["detail"]).get("announcement_seq") == seq]
    try:
        redone = reveal(LedgerReader(config.storage.ledger), a)
    except (LedgerMissingError, LookupError, RotationRefused) as exc:
        print(f"audit draw: {exc}", file=sys.stderr)
        return 2
    checks = {
        "announcement hash": a.hash == recorded["announcement_hash"],
        "announcement before the interval": a.ts <= redone.interval_start,
        "the announced interval": redone.interval_start == recorded["interval_start"],
        "the first draw of the announcement": not earlier,
        "interval digest": redone.interval_digest == recorded["interval_digest"],
        "seed": redone.seed == recorded["seed"],
        "candidates": list(a.eligible) == list(recorded["candidates"]),
        "winner": redone.winner == recorded["winner"]}
    for what, ok in checks.items():
        print(f"{what}: {'matches' if ok else 'DOES NOT MATCH'}")
    print(f"recomputed: announced {_iso(a.ts)} (row {a.seq}), interval "
          f"{_iso(redone.interval_start)}, seed {redone.seed}, winner {redone.winner}")
    return 0 if all(checks.values()) else 1
