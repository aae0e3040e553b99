"""What the coop asked the agent to do, until when, and the safe state when it goes silent.

A command is ``{"seq": n, "kind": "battery", "power_w": W, "expires_at": t}``
(discharge > 0) or ``{"seq": n, "kind": "load", "load": "m1/load1", "on": false,
"expires_at": t}``. Each holds until its ``expires_at`` (Unix time) and only
while the coop is heard (a command or a heartbeat within ``coop_silent_s``).
Otherwise the agent is in the safe state: no battery command (the battery
returns to its own logic) and every load it switched off switched on again.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The longest a single command may hold: every mandate expires, and soon.
MAX_MANDATE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Mandate:
    """One command in force."""

    seq: int
    kind: str  # "battery" or "load"
    target: str  # "battery" or the load's name (member/loadN)
    power_w: float | None
    on: bool | None
    expires_at: float


def parse_command(command: dict, now: float) -> Mandate:
    """A mandate from a command; raises ``ValueError`` naming the bad field."""
    seq, kind, expires = command.get("seq"), command.get("kind"), command.get("expires_at")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError(f"seq = {seq!r}: expected an integer")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise ValueError(f"expires_at = {expires!r}: expected a Unix time (every command "
                         "expires)")
    expires = min(float(expires), now + MAX_MANDATE_S)
    if kind == "battery":
        power = command.get("power_w")
        if not isinstance(power, int | float) or isinstance(power, bool):
            raise ValueError(f"power_w = {power!r}: expected watts (discharge > 0)")
        return Mandate(seq, "battery", "battery", float(power), None, expires)
    if kind == "load":
        load, on = command.get("load"), command.get("on")
        if not isinstance(load, str) or not isinstance(on, bool):
            raise ValueError("load commands need load (name) and on (true/false)")
        return Mandate(seq, "load", load, None, on, expires)
    raise ValueError(f"kind = {kind!r}: expected 'battery' or 'load'")


class Mandates:
    """The commands in force, newest per target."""

    def __init__(self, coop_silent_s: float) -> None:
        self.coop_silent_s = coop_silent_s
        self.by_target: dict[str, Mandate] = {}
        self.last_seq: dict[str, int] = {}  # per target, so a replayed command never revives
        self.switched_off: set[str] = set()

    def accept(self, mandate: Mandate) -> bool:
        """Keep a mandate unless an equal or newer one for its target is held (replays)."""
        if self.last_seq.get(mandate.target, -1) >= mandate.seq:
            return False
        self.last_seq[mandate.target] = mandate.seq
        self.by_target[mandate.target] = mandate
        return True

    def coop_silent(self, now: float, last_heard: float | None) -> bool:
        """Whether the coop has said nothing for ``coop_silent_s``."""
        return last_heard is None or now - last_heard > self.coop_silent_s

    def in_force(self, now: float, last_heard: float | None) -> list[Mandate]:
        """Mandates still valid now; none at all while the coop is silent.

        Silence ends every mandate for good: a coop heard again must command
        again, so nothing from before the silence resumes by itself.
        """
        if self.coop_silent(now, last_heard):
            self.by_target.clear()
            return []
        return [m for m in self.by_target.values() if m.expires_at > now]
