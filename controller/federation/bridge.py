"""Mosquitto configuration for one coop's broker, bridged to its peers.

Each pair of coops is bridged once, by the coop whose id sorts first, and
each bridge carries only the two coops' own prefixes: ``federation/<me>/#``
out, ``federation/<peer>/#`` in. A message therefore crosses one bridge and
stops there, so a full mesh has no loops and no broker is a centre. Bridge
state is published by mosquitto on ``$SYS/broker/connection/<name>/state``
(``1`` up, ``0`` down); the connection is named ``<me>--<peer>``.
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


def mosquitto_conf(me: str, port: int, peers: list[Peer], host: str = "127.0.0.1",
                   persistence_dir: str | None = None, restart_s: int = 2) -> str:
    """The text of ``mosquitto.conf`` for coop ``me`` listening on ``host:port``."""
    lines = [f"listener {port} {host}", "allow_anonymous true"]
    if persistence_dir:
        # Retained offers survive a broker restart, so late joiners still get them.
        lines += ["persistence true", f"persistence_location {persistence_dir.rstrip('/')}/"]
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
            f"topic federation/{me}/# out 1",
            f"topic federation/{peer.id}/# in 1",
        ]
    return "\n".join(lines) + "\n"
