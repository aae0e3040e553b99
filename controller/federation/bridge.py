"""Mosquitto configuration for one coop's broker, bridged to its peers.

Each pair of coops is bridged once, by the coop whose id sorts first, and
each bridge carries only the two coops' own prefixes: ``federation/<me>/#``
out, ``federation/<peer>/#`` in. A message therefore crosses one bridge and
stops there, so a full mesh has no loops and no broker is a centre. Bridge
state is published by mosquitto on ``$SYS/broker/connection/<name>/state``
(``1`` up, ``0`` down); the connection is named ``<me>--<peer>``.

With :class:`Security`, the broker is closed: no anonymous client, a password
file, and an ACL (:func:`acl_text`) under which each coop's user (its own
controller on its own broker; its bridge on a peer's) may write only under
``federation/<its id>/``. Each pair of coops shares one bridge password, known
to those two only. TLS is optional. The text drops into Debian's
``/etc/mosquitto/conf.d/``: it declares no ``pid_file``, ``log_dest`` or
``persistence_location`` (Debian's main file does), and never turns Debian's
persistence off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer coop's id and the address of its broker."""

    id: str
    host: str
    port: int


def connection_name(a: str, b: str) -> str:
    """The bridge's name (also its remote client id) between coops ``a`` and ``b``."""
    first, second = sorted((a, b))
    return f"{first}--{second}"


@dataclass(frozen=True, slots=True)
class Security:
    """A closed broker: files it reads, this coop's bridge passwords, optional TLS."""

    password_file: str
    acl_file: str
    bridge_passwords: dict[str, str]  # peer id → the password this pair shares
    certfile: str | None = None  # TLS on the listener when given (with keyfile)
    keyfile: str | None = None
    cafile: str | None = None  # TLS on the bridges (peers' certificates) when given


def acl_text(coops: list[str]) -> str:
    """The ACL: each coop writes only under its own prefix, reads the federation."""
    lines = ["# commonwatt federation: each coop writes only under federation/<its id>/"]
    for coop in sorted(coops):
        lines += ["", f"user {coop}", f"topic write federation/{coop}/#",
                  "topic read federation/#", "topic read $SYS/broker/connection/#"]
    return "\n".join(lines) + "\n"


def mosquitto_conf(me: str, port: int, peers: list[Peer], host: str = "127.0.0.1",
                   persistence_dir: str | None = None, restart_s: int = 2,
                   persistence: bool = True, security: Security | None = None) -> str:
    """The text of ``mosquitto.conf`` for coop ``me`` listening on ``host:port``."""
    lines = [f"listener {port} {host}"]
    if security is None:
        lines.append("allow_anonymous true")
    else:
        lines += ["allow_anonymous false", f"password_file {security.password_file}",
                  f"acl_file {security.acl_file}"]
        if security.certfile:
            lines += [f"certfile {security.certfile}", f"keyfile {security.keyfile}"]
    if persistence:
        # Retained offers survive a broker restart, so late joiners still get them.
        lines.append("persistence true")
        if persistence_dir:
            lines.append(f"persistence_location {persistence_dir.rstrip('/')}/")
    else:
        lines.append("persistence false")
    # Brokers drop messages past this queue: offers are re-requested, never trusted.
    lines += ["sys_interval 1", "max_queued_messages 10000"]
    for peer in sorted(peers, key=lambda p: p.id):
        if peer.id <= me:
            continue  # the peer whose id sorts first opens this bridge
        name = connection_name(me, peer.id)
        lines += [
            "",
            f"connection {name}",
            f"address {peer.host}:{peer.port}",
            f"remote_clientid {name}",
            "cleansession false",
            f"restart_timeout {restart_s}",
            "keepalive_interval 5",
            "try_private true",
            "notifications true",
            "notifications_local_only true",  # a peer's ACL would refuse them anyway
            f"topic federation/{me}/# out 1",
            f"topic federation/{peer.id}/# in 1",
        ]
        if security is not None:
            lines += [f"remote_username {me}",
                      f"remote_password {security.bridge_passwords[peer.id]}"]
            if security.cafile:
                lines.append(f"bridge_cafile {security.cafile}")
    return "\n".join(lines) + "\n"
