"""How a client logs into an MQTT broker: user name, password and TLS.

One :class:`MqttAccess` is applied to every paho client Commonwatt opens (the
device hub, the figures publisher, the simulated devices), so a broker that
refuses anonymous clients, or speaks only TLS, is reached the same way by all.
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass

import paho.mqtt.client as mqtt


@dataclass(frozen=True, slots=True)
class MqttAccess:
    """Credentials and TLS settings for one broker; the default is anonymous, plain TCP."""

    username: str | None = None
    password: str | None = None
    #: TLS on; with no ``ca_file`` the system's trusted CAs verify the broker.
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Skip the check that the broker's certificate names its host (never for production).
    insecure: bool = False

    def __repr__(self) -> str:
        # The password must never reach a log line or a traceback.
        shown = "***" if self.password else None
        return (f"MqttAccess(username={self.username!r}, password={shown!r}, tls={self.tls}, "
                f"ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
                f"key_file={self.key_file!r}, insecure={self.insecure})")

    def apply(self, client: mqtt.Client) -> None:
        """Set the credentials and TLS context on ``client`` (before it connects)."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file,
                           keyfile=self.key_file, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
            if self.insecure:
                client.tls_insecure_set(True)

    def toml_lines(self) -> list[str]:
        """The ``[mqtt]`` keys that say the same, for a generated configuration file."""
        lines = []
        if self.username is not None:
            lines.append(f'username = "{self.username}"')
        if self.password is not None:
            lines.append(f'password = "{self.password}"')
        for key, value in (("tls_ca", self.ca_file), ("tls_cert", self.cert_file),
                           ("tls_key", self.key_file)):
            if value is not None:
                lines.append(f'{key} = "{value}"')
        if self.tls and self.ca_file is None and self.cert_file is None:
            lines.append("tls = true")
        if self.insecure:
            lines.append("tls_insecure = true")
        return lines


ANONYMOUS = MqttAccess()


def unique_client_id(role: str) -> str:
    """A client id no other client will use: ``<role>-<8 random hex digits>``.

    A broker drops the older of two clients with one id (MQTT 3.1.1 §3.1.4), so a
    fixed id let ``commonwatt read`` take over the controller's session (issue 20).
    """
    return f"{role}-{secrets.token_hex(4)}"


def refusal_reason(reason: object) -> str:
    """Words for a CONNACK refusal, e.g. ``Not authorized`` or ``Bad user name or password``."""
    text = str(reason)
    hints = {"Not authorized": "the broker refused the user name or password (or needs one)",
             "Bad user name or password": "wrong user name or password"}
    return f"{text}: {hints[text]}" if text in hints else text
