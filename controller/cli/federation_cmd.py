"""``commonwatt federation``: keys, bridge configuration and status of a federation of coops.

``federation keygen --out KEY`` writes a new Ed25519 private key (mode 0600)
and prints the public key to list in the charter.

``federation bridge-conf CONFIG [--listen HOST] [--persistence DIR]
[--credentials FILE --out DIR] [--tls-cert F --tls-key F] [--tls-ca F]`` prints
this coop's mosquitto configuration: its listener and one bridge to each peer
whose id sorts after its own, carrying only the two coops' topic prefixes,
persistence on. With ``--credentials`` (TOML: ``controller = "..."`` and a
``[peers]`` table of the password each pair of coops shares) it writes into
``--out`` (e.g. ``/etc/mosquitto/conf.d``) ``federation.conf``, an ACL
(``federation.acl``: each coop writes only under its own prefix) and a hashed
password file (``federation.passwd``, by ``mosquitto_passwd``).

``federation status CONFIG [--json] [--wait S]`` takes the coop's config (or
the charter itself) and shows the controller's own view: the intervals it
committed, from its store (``federation-<id>.sqlite`` beside the ledger, or
``[self] state``), and those it offered and still waits on. It also listens
to the broker for ``--wait`` seconds for the peers and the bridge states
(``$SYS``), verifying every signature, publishing nothing. Exit 0 when there
is no disagreement, 1 when there is, 2 on a bad config or charter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from controller.federation.bridge import Peer, Security, acl_text, mosquitto_conf
from controller.federation.charter import Charter, CharterError, load_charter
from controller.federation.offers import generate_key, private_pem, public_b64


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``federation`` group: ``keygen``, ``bridge-conf`` and ``status``."""
    fed = sub.add_parser("federation", help="share surplus between coops over bridged brokers")
    actions = fed.add_subparsers(dest="federation_command", metavar="ACTION", required=True)
    keygen = actions.add_parser("keygen", help="write a new Ed25519 key, print its public part")
    keygen.add_argument("--out", type=Path, required=True, help="private key file to write")
    keygen.set_defaults(func=_keygen)
    conf = actions.add_parser("bridge-conf", help="print this coop's mosquitto.conf")
    conf.add_argument("config", type=Path, help="federation charter (TOML)")
    conf.add_argument("--persistence", default=None, help="mosquitto persistence directory "
                      "(default: the broker's own, e.g. Debian's /var/lib/mosquitto)")
    conf.add_argument("--listen", default=None,
                      help="listener address (default: the host of [self] broker)")
    conf.add_argument("--credentials", type=Path, default=None,
                      help="TOML of the controller's and each pair's bridge password")
    conf.add_argument("--out", type=Path, default=None,
                      help="directory to write federation.conf, .acl and .passwd into")
    conf.add_argument("--tls-cert", default=None, help="listener certificate (TLS)")
    conf.add_argument("--tls-key", default=None, help="listener private key (TLS)")
    conf.add_argument("--tls-ca", default=None, help="CA file to check peers' brokers (TLS)")
    conf.set_defaults(func=_bridge_conf)
    status = actions.add_parser("status", help="peers, bridges, last agreed interval, "
                                "disagreements")
    status.add_argument("config", type=Path, help="federation charter (TOML)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--wait", type=float, default=3.0,
                        help="seconds to listen to the broker (default 3)")
    status.set_defaults(func=_status)


def _load(path: Path) -> Charter | None:
    charter, _ = _load_with_state(path)
    return charter


def _load_with_state(path: Path) -> tuple[Charter | None, Path | None]:
    """The charter, from a coop config's ``[federation] charter`` or directly; its store."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = {}
    link = raw.get("federation", {}).get("charter") if isinstance(raw.get("federation"),
                                                                  dict) else None
    try:
        if isinstance(link, str):  # a coop config: the charter it names, the ledger's dir
            charter = load_charter(path.parent / link)
            ledger = Path(raw.get("storage", {}).get("ledger", "var/ledger.sqlite"))
            ledger = ledger if ledger.is_absolute() else path.parent / ledger
            state = charter.self_.state or ledger.parent / f"federation-{charter.self_.id}.sqlite"
            return charter, state
        charter = load_charter(path)
        return charter, charter.self_.state
    except CharterError as exc:
        print(exc, file=sys.stderr)
        return None, None


def _keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        print(f"{args.out}: exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    key = generate_key()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem(key))
    print(public_b64(key))
    return 0


def _bridge_conf(args: argparse.Namespace) -> int:
    charter = _load(args.config)
    if charter is None:
        return 2
    peers, problems = [], []
    for m in charter.members:
        if m.id == charter.self_.id:
            continue
        if m.broker is None:
            problems.append(f"{args.config}: members[{m.id}].broker: required to bridge to it")
            continue
        host, _, port = m.broker.rpartition(":")
        peers.append(Peer(m.id, host, int(port)))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    host, port = charter.self_.host_port
    security = None
    if args.credentials is not None:
        if args.out is None:
            print("--credentials: needs --out DIR for the password and ACL files",
                  file=sys.stderr)
            return 2
        if bool(args.tls_cert) != bool(args.tls_key):
            print("--tls-cert and --tls-key: give both or neither", file=sys.stderr)
            return 2
        try:
            security = _write_security(charter, args)
        except (ValueError, OSError, subprocess.CalledProcessError) as exc:
            print(f"{args.credentials}: {exc}", file=sys.stderr)
            return 2
    text = mosquitto_conf(charter.self_.id, port, peers, host=args.listen or host,
                          persistence_dir=args.persistence, security=security)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "federation.conf").write_text(text)
        print(args.out / "federation.conf")
    else:
        print(text, end="")
    return 0


def _write_security(charter: Charter, args: argparse.Namespace) -> Security:
    """Write the ACL and the hashed password file; the :class:`Security` that names them."""
    import tomllib

    raw = tomllib.loads(args.credentials.read_text(encoding="utf-8"))
    me = charter.self_.id
    controller, pairs = raw.get("controller"), raw.get("peers", {})
    peers = [m.id for m in charter.members if m.id != me]
    if not isinstance(controller, str) or not controller:
        raise ValueError("controller: expected this coop's controller password")
    if not isinstance(pairs, dict):
        raise ValueError("peers: expected a table of peer id = shared password")
    absent = [p for p in peers if not isinstance(pairs.get(p), str) or not pairs[p]]
    if absent:
        raise ValueError(f"peers.{absent[0]}: expected the password shared with {absent[0]}")
    for name, value in [("controller", controller), *pairs.items()]:
        if any(c.isspace() for c in value) or ":" in value:
            raise ValueError(f"{name}: a password without spaces or ':'")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    acl, passwd = out / "federation.acl", out / "federation.passwd"
    acl.write_text(acl_text([me, *peers]))
    fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as plain:  # hashed in place below, never left in clear
        plain.write(f"{me}:{controller}\n" + "".join(f"{p}:{pairs[p]}\n" for p in peers))
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
    return Security(str(passwd.resolve()), str(acl.resolve()), {p: pairs[p] for p in peers},
                    args.tls_cert, args.tls_key, args.tls_ca)


def _status(args: argparse.Namespace) -> int:
    from controller.federation.transport import FederationNode

    charter, state = _load_with_state(args.config)
    if charter is None:
        return 2
    try:
        node = FederationNode(charter, passive=True,
                              client_id=f"federation-status-{charter.self_.id}-{os.getpid()}")
    except ValueError as exc:  # the private key file
        print(exc, file=sys.stderr)
        return 2
    node.start()
    time.sleep(max(args.wait, 0.0))
    node.reconcile()
    report = node.status()
    node.stop()
    view = _controller_view(state)
    if "committed" in view:  # the controller's own view replaces what retained messages hint
        report["waiting"] = {}
    report |= view
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    return 1 if report["disagreements"] else 0


def _controller_view(state: Path | None) -> dict:
    """What the controller itself committed and still waits on, from its store."""
    from controller.federation.store import NodeStore

    if state is None or not state.exists():
        return {"source": "broker (no controller store found)"}
    store = NodeStore(state)
    try:
        committed = store.committed()
        offered = sorted({i for t, i, _ in store.own() if "/offers/" in t})
    finally:
        store.close()
    done = {s.interval for s in committed}
    zeroed = [{"interval": s.interval, "coop": c, "why": w} for s in committed
              for c, w in sorted(s.counted.items()) if len(w) < 16]
    return {"source": f"controller store {state}",
            "last_agreed": max(done, default=None), "committed": len(done),
            "offered_not_agreed": [i for i in offered if i not in done],
            "counted_zero": zeroed[-20:]}


def _print(report: dict) -> None:
    print(f"coop {report['coop']}: broker {'connected' if report['connected'] else 'UNREACHABLE'}")
    print("peers:")
    for p in report["peers"]:
        state = "member" if p["active"] else "LAPSED"
        print(f"  {p['id']:<20} {state:<7} until {p['expires']}  last offer {p['last_offer']}"
              f"  last result {p['last_result']}")
    print("bridges:")
    for name, state in report["bridges"].items() or [("(none seen)", "")]:
        print(f"  {name:<30} {state}")
    print(f"view: {report['source']}")
    print(f"last agreed interval: {report['last_agreed']}")
    if report.get("offered_not_agreed"):
        print(f"offered, not agreed yet: {report['offered_not_agreed']}")
    for z in report.get("counted_zero", []):
        print(f"interval {z['interval']}: {z['coop']} counted zero ({z['why']})")
    for interval, coops in report["waiting"].items():
        print(f"waiting for offers of interval {interval}: {', '.join(coops)}")
    for d in report["disagreements"]:
        print(f"DISAGREEMENT interval {d['interval']}: {d['what']} of {d['coop']}: "
              f"ours {d['ours'][:16]}, theirs {d['theirs'][:16]}")
    for reason in report["rejected"]:
        print(f"rejected: {reason}")
