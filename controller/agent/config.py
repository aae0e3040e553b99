"""The agent's configuration file (TOML), validated with the coop's own device models.

::

    [agent]
    member = "m1"                  # the household's member id in the coop
    coop = "coop-a"                # topics live under coop/<coop>/agents/<member>/
    broker = "coop.example.org:1883"
    spool = "var/agent-spool.sqlite"
    period_s = 5                   # one frozen reading every period
    coop_silent_s = 60             # no word from the coop this long: safe state

    [[devices]]                    # exactly as in the coop's config
    kind = "meter"
    family = "sunspec"
    host = "192.168.1.20"
    port = 502

The devices are checked by building a one-member coop config from them, so
the agent reads with the same drivers, validation and health as the coop.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from controller.config import (
    ControllerConfig,
    CoopConfig,
    DeviceConfig,
    MemberConfig,
    MqttConfig,
)
from devices.validation import parse_toml, read_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSection(_Strict):
    """Who the agent is and where the coop is."""

    member: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    coop: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    broker: str = Field(pattern=r"^[^:]+:\d{1,5}$", description="HOST:PORT of the coop broker")
    spool: Path = Path("var/agent-spool.sqlite")
    period_s: float = Field(5.0, gt=0, le=3600)
    coop_silent_s: float = Field(60.0, gt=0, le=86400,
                                 description="no command or heartbeat this long: safe state")
    resend_after_s: float = Field(10.0, gt=0, le=3600,
                                  description="readings the coop has not confirmed as booked "
                                  "for this long are sent again")
    max_spool_rows: int = Field(1_000_000, ge=100,
                                description="oldest unsent readings dropped (and counted) past it")

    @property
    def host_port(self) -> tuple[str, int]:
        """The coop broker as ``(host, port)``."""
        host, _, port = self.broker.rpartition(":")
        return host, int(port)


class AgentConfig(_Strict):
    """The whole agent file."""

    agent: AgentSection
    controller: ControllerConfig = ControllerConfig()
    mqtt: MqttConfig | None = Field(None, description="the household's own broker, for its "
                                    "MQTT devices (not the coop's)")
    devices: list[DeviceConfig] = Field(min_length=1)

    def household(self) -> CoopConfig:
        """A one-member coop config holding this household's devices (for the drivers)."""
        member = MemberConfig(id=self.agent.member, name=self.agent.member,
                              devices=self.devices)
        return CoopConfig(name=f"agent {self.agent.member}", controller=self.controller,
                          mqtt=self.mqtt, members=[member])

    def topic(self, leaf: str) -> str:
        """``coop/<coop>/agents/<member>/<leaf>``."""
        return f"coop/{self.agent.coop}/agents/{self.agent.member}/{leaf}"


class AgentConfigError(Exception):
    """An agent file that cannot be used; the message names every problem."""


def parse_agent_config(text: str, source: str = "<agent>") -> AgentConfig:
    """Parse and validate TOML text; the household's devices are checked like a coop's."""
    config = parse_toml(text, source, AgentConfig, AgentConfigError)
    try:
        config.household()
    except ValueError as exc:
        raise AgentConfigError(f"{source}: devices: {exc}") from None
    return config


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read, parse and validate an agent file."""
    path = Path(path)
    text = read_text(path, AgentConfigError)
    return parse_agent_config(text, str(path))
