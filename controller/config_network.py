"""The network-facing sections of the configuration: ``[api]`` and ``[mqtt]``, and the
host names both (and the Modbus devices) use.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from devices.mqtt.access import MqttAccess

#: One DNS label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host(value: str) -> str:
    """An IPv4/IPv6 address or a host name; not a URL, not ``host:port``, no spaces."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("expected an IP address or a host name (letters, digits, hyphens and"
                         " dots; no scheme, port or spaces)")
    return value


#: A host to connect to or listen on: an IP address or a valid host name.
HostName = Annotated[str, AfterValidator(_host)]
#: A path in the TOML file (a string there; strict mode would want a Path object).
FilePath = Annotated[Path, Field(strict=False)]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost`` or a loopback address."""
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Strict(BaseModel):
    """Base of every configuration table: unknown keys refused, values immutable."""

    # strict: "502" is not a port and true is not an efficiency; no inf or nan anywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class MqttPasswordError(ValueError):
    """The configured MQTT password file cannot be read."""


class ApiConfig(Strict):
    """Where the HTTP API listens: loopback only, unless ``public = true``."""

    # Declared before host, so that host's check sees it.
    public: bool = Field(
        False, description="listen beyond loopback (behind a TLS reverse proxy, say)")
    host: HostName = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    trusted_proxies: tuple[str, ...] = Field(
        (), strict=False,
        description="addresses or networks of reverse proxies whose X-Forwarded-* and "
                    "Forwarded headers are believed; a request through any proxy is never "
                    "local")
    local_commands: bool = Field(
        False, description="the tokenless island command from this host's loopback: only "
                           "when no proxy or tunnel on this host can reach the API")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for v in values:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address or network (e.g. 127.0.0.1 or "
                                 "10.0.0.0/24)") from None
        return values

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` as networks."""
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.trusted_proxies)

    @field_validator("host")
    @classmethod
    def _loopback_unless_public(cls, host: str, info: ValidationInfo) -> str:
        if not info.data.get("public", False) and not is_loopback(host):
            raise ValueError("not a loopback address: the API serves every member's data, so"
                             " listening beyond this machine needs [api] public = true")
        return host


class MqttConfig(Strict):
    """The MQTT broker: members' figures are published to it, MQTT devices are read from it."""

    host: HostName = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("commonwatt", pattern=r"^[A-Za-z0-9_/-]+$")
    publish_s: float = Field(
        10.0, gt=0, le=3600, description="live power and battery charge go to MQTT at most"
        " this often (wall seconds); energy figures once per settlement interval. Home"
        " Assistant's recorder writes a row for every change")
    username: str | None = Field(None, min_length=1, description="broker login")
    # SecretStr: the config is written to the audit log and must not carry the password.
    password: SecretStr | None = Field(None, strict=False, description="broker password")
    password_file: FilePath | None = Field(
        None, description="a file holding the broker password (instead of password)")
    tls: bool = Field(False, description="TLS with the system's CAs (on by itself with tls_ca)")
    tls_ca: FilePath | None = Field(None, description="CA certificate (PEM) of the broker")
    tls_cert: FilePath | None = Field(None, description="client certificate (PEM)")
    tls_key: FilePath | None = Field(None, description="client certificate's key (PEM)")
    tls_insecure: bool = Field(
        False, description="skip the host name check of the broker's certificate (tests only)")

    @model_validator(mode="after")
    def _login(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file: give one, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (client certificate and key)")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether the broker is reached over TLS."""
        return self.tls or self.tls_ca is not None or self.tls_cert is not None

    def access(self) -> MqttAccess:
        """The login and TLS settings for every client; reads ``password_file``.

        Raises:
            MqttPasswordError: the password file cannot be read (``config check`` says so
            beforehand).
        """
        password = None if self.password is None else self.password.get_secret_value()
        if self.password_file is not None:
            try:
                password = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MqttPasswordError(f"mqtt.password_file = '{self.password_file}': cannot read:"
                                  f" {exc.strerror}") from None
        paths = [None if p is None else str(p) for p in (self.tls_ca, self.tls_cert, self.tls_key)]
        return MqttAccess(self.username, password, self.uses_tls, *paths, self.tls_insecure)
