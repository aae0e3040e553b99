"""A mosquitto ACL and password file that keep each household to its own figures.

``commonwatt mqtt acl CONFIG --out DIR`` (:mod:`controller.cli.mqtt_cmd`) writes:

* ``DIR/acl`` (mosquitto's ``acl_file``): the controller may read and write every
  topic; each member's Home Assistant (user ``ha-<member>``) may read only its own
  member's figures (``<prefix>/members/<id>/#``), the coop's totals
  (``<prefix>/coop/#``), the availability topic, and the Home Assistant discovery
  configs of those two devices; each member's MQTT devices (user ``dev-<member>``)
  may publish and receive commands on that member's device topics only.
* ``DIR/passwd`` (``password_file``): one entry per user, in the format mosquitto 2
  writes itself (``mosquitto_passwd``): ``user:$7$101$<salt>$<hash>``, PBKDF2 with
  HMAC-SHA512, 101 iterations, a 12-byte salt, both base64. Existing entries are kept,
  so a rerun adds new members without changing anybody's password.
* ``DIR/credentials.txt``: the new users' passwords, to hand to each household
  (owner-only).
* ``DIR/mosquitto.conf``: the lines to include in the broker's configuration.

Mosquitto started as root reads the password and ACL files after it has dropped to its
own user (``mosquitto``), also on every reload: those two files (and the directory) go to
the broker's group, readable by it and nobody else (0640; 0750); everything else stays
owner-only.

Mosquitto checks read access on every message it delivers, so a household's Home
Assistant that subscribes to ``homeassistant/#`` or ``#`` still receives only what its
ACL lets it read.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from controller.config import CoopConfig, MemberConfig
from controller.mqtt_publish import COOP_ID
from devices.mqtt.formats import FORMATS

#: mosquitto_passwd's parameters (mosquitto 2.0, ``$7$``: PBKDF2-SHA512).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
CONTROLLER_USER = "commonwatt"


def password_entry(user: str, password: str, salt: bytes | None = None) -> str:
    """One ``password_file`` line, as ``mosquitto_passwd`` writes it."""
    if ":" in user or "\n" in user:
        raise ValueError(f"user = {user!r}: a mosquitto user name has no ':' or newline")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (f"{user}:$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def household_user(member_id: str) -> str:
    """The broker user of a member's Home Assistant."""
    return f"ha-{member_id}"


def device_user(member_id: str) -> str:
    """The broker user of a member's MQTT devices (plugs, meters, its edge agent)."""
    return f"dev-{member_id}"


def device_topics(member: MemberConfig) -> list[str]:
    """The topic patterns a member's MQTT devices publish on and take commands from."""
    patterns: list[str] = []
    for dev in member.devices:
        if dev.protocol != "mqtt" or dev.topic is None:
            continue
        base = str(dev.topic)
        fmt = FORMATS.get(dev.family)
        if fmt is not None and fmt.tasmota_style:
            patterns += [f"tele/{base}/#", f"cmnd/{base}/#", f"stat/{base}/#"]
        elif fmt is not None and fmt.setpoints:  # the agent: .../live/<kind> and .../commands
            patterns.append(f"{base.rsplit('/live/', 1)[0]}/#")
        else:
            patterns += [base, f"{base}/#"]
    return sorted(set(patterns))


@dataclass(frozen=True)
class AclPlan:
    """What the files say: the ACL text and each user (new ones with their password)."""

    acl: str
    users: list[str]
    controller_user: str


def acl_text(config: CoopConfig, discovery_prefix: str = "homeassistant") -> AclPlan:
    """The ACL file for ``config``'s members (see the module docstring)."""
    mqtt = config.mqtt
    prefix = (mqtt.topic_prefix if mqtt is not None else "commonwatt").rstrip("/")
    controller = (mqtt.username if mqtt is not None and mqtt.username else CONTROLLER_USER)
    lines = ["# Written by `commonwatt mqtt acl`; rerun it after adding a member.",
             "# Mosquitto checks read access for every message it delivers.", "",
             "# The controller: reads the devices, publishes the figures and discovery.",
             f"user {controller}", "topic readwrite #", ""]
    users = [controller]
    coop = [f"topic read {prefix}/coop/#", f"topic read {prefix}/status",
            f"topic read {discovery_prefix}/sensor/commonwatt_{COOP_ID}/#",
            # Home Assistant announces itself here; reading it back is harmless.
            f"topic readwrite {discovery_prefix}/status"]
    for member in config.members:
        ha = household_user(member.id)
        lines += [f"# {member.id}'s Home Assistant: its own member and the coop's totals.",
                  f"user {ha}", f"topic read {prefix}/members/{member.id}/#",
                  f"topic read {discovery_prefix}/sensor/commonwatt_{member.id}/#", *coop, ""]
        users.append(ha)
        topics = device_topics(member)
        if topics:
            dev = device_user(member.id)
            lines += [f"# {member.id}'s MQTT devices: their own topics only.", f"user {dev}",
                      *(f"topic readwrite {t}" for t in topics), ""]
            users.append(dev)
    return AclPlan("\n".join(lines), users, controller)


def broker_group() -> str | None:
    """The group mosquitto runs as (``mosquitto`` where the package made one), or None."""
    try:
        return grp.getgrnam("mosquitto").gr_name
    except KeyError:
        return None


def _owner_only(path: Path, text: str, group: int | None = None) -> None:
    """Write ``text`` to ``path``: 0600, or 0640 for ``group`` (the broker's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if group is not None:
        os.chown(path, -1, group)
    path.chmod(0o600 if group is None else 0o640)


def write_acl(config: CoopConfig, out: Path, discovery_prefix: str = "homeassistant",
              group: str | None = None) -> dict[str, str]:
    """Write the four files into ``out``; returns the new users' passwords (user → password).

    The controller keeps the password its config gives; a user already in
    ``out/passwd`` keeps its entry. ``group``: the broker's group, which may read the
    ACL and password file (see the module docstring).
    """
    gid = None if group is None else grp.getgrnam(group).gr_gid
    out.mkdir(parents=True, exist_ok=True)
    if gid is not None:
        os.chown(out, -1, gid)
    out.chmod(0o700 if gid is None else 0o750)
    plan = acl_text(config, discovery_prefix)
    passwd = out / "passwd"
    entries: dict[str, str] = {}
    if passwd.exists():
        for line in passwd.read_text(encoding="utf-8").splitlines():
            user, sep, _ = line.partition(":")
            if sep and user in plan.users:
                entries[user] = line
    new: dict[str, str] = {}
    mqtt = config.mqtt
    given = None if mqtt is None else mqtt.access().password
    for user in plan.users:
        if user == plan.controller_user and given:
            entries[user] = password_entry(user, given)  # the broker must take the config's
        elif user not in entries:
            new[user] = secrets.token_urlsafe(18)
            entries[user] = password_entry(user, new[user])
    _owner_only(out / "acl", plan.acl + "\n", gid)
    _owner_only(passwd, "".join(f"{entries[u]}\n" for u in plan.users), gid)
    if new:
        _owner_only(out / "credentials.txt", "".join(
            f"{user} {password}\n" for user, password in new.items()))
    _owner_only(out / "mosquitto.conf", "# Include in the broker's configuration:\n"
                "allow_anonymous false\n"
                f"password_file {(out / 'passwd').resolve()}\n"
                f"acl_file {(out / 'acl').resolve()}\n")
    return new
