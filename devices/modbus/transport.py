"""One shared, serialised Modbus TCP connection per host:port.

Many inverters accept a single Modbus TCP client, so every driver that talks
to the same host:port goes through one :class:`ModbusLink`. Requests on a
link are serialised; each has its own timeout. Reads longer than the Modbus
limit of 125 registers are split.

Writes go only to registers a driver declared writable with
:meth:`ModbusLink.allow_writes` (a template's control and PV-limit writes, the
SunSpec control points of the discovered models): a write anywhere else is
refused with :class:`WriteRefused` before anything goes on the wire, so a bug
or a bad template cannot reach a device's configuration registers.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterable

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

MAX_READ = 125
log = logging.getLogger(__name__)

_EXCEPTION_REASONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "wrong unit id (gateway target did not respond)",
}


def quiet_pymodbus() -> None:
    """Keep pymodbus's own output off an installer's terminal (``scan``, ``read``).

    pymodbus logs frame hex dumps and "no response" warnings through its
    ``pymodbus`` logger; every failure it reports also reaches Commonwatt as a
    :class:`DeviceError`, whose reason is what the installer sees, once.
    """
    logger = logging.getLogger("pymodbus")
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    warnings.filterwarnings("ignore", module=r"pymodbus(\..*)?")


class DeviceError(Exception):
    """A device did not give a usable answer.

    Attributes:
        reason: short, installer-facing cause: ``refused``, ``timeout``,
            ``disconnected``, ``exception N (…)``, ``no SunSpec marker``, ``garbage``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class WriteRefused(DeviceError):
    """A write to a register no template or SunSpec control point names."""

    def __init__(self, link: str, unit: int, addresses: list[int]) -> None:
        shown = ", ".join(map(str, addresses[:8])) + (" …" if len(addresses) > 8 else "")
        super().__init__("write refused", (
            f"{link} unit {unit}: register(s) {shown} are not writable (not a control"
            " register of the device's template or a SunSpec control point)"))
        self.addresses = tuple(addresses)


class ModbusLink:
    """A Modbus TCP connection to one host:port, shared by all unit ids behind it."""

    def __init__(self, host: str, port: int, timeout_s: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0
        )
        self._lock = asyncio.Lock()
        #: unit id → register addresses a write may touch.
        self._writable: dict[int, set[int]] = {}

    def allow_writes(self, unit: int, addresses: Iterable[int]) -> None:
        """Declare ``addresses`` of ``unit`` writable (adds to what is allowed already)."""
        self._writable.setdefault(unit, set()).update(addresses)

    def writable(self, unit: int) -> frozenset[int]:
        """The register addresses of ``unit`` a write may touch."""
        return frozenset(self._writable.get(unit, ()))

    @property
    def name(self) -> str:
        """``host:port`` of the link."""
        return f"{self.host}:{self.port}"

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.timeout_s)
        except TimeoutError:
            raise DeviceError("timeout", f"connecting to {self.name}") from None
        if not ok:
            raise DeviceError("refused", f"no Modbus TCP server at {self.name}")

    async def read(
        self, address: int, count: int, unit: int, function: str = "holding"
    ) -> list[int]:
        """Read ``count`` holding (FC 3) or input (FC 4) registers from ``address`` of ``unit``."""
        reader = (
            self._client.read_input_registers
            if function == "input"
            else self._client.read_holding_registers
        )
        registers: list[int] = []
        async with self._lock:
            await self._ensure_connected()
            for start in range(address, address + count, MAX_READ):
                size = min(MAX_READ, address + count - start)
                registers += await self._request(
                    reader(start, count=size, device_id=unit),
                    f"read {size} @ {start} unit {unit}",
                )
        return registers

    async def write(self, address: int, values: list[int], unit: int) -> None:
        """Write ``values`` to consecutive holding registers from ``address``.

        Raises:
            WriteRefused: a register in the range was not declared writable.
        """
        allowed = self._writable.get(unit, set())
        outside = [a for a in range(address, address + len(values)) if a not in allowed]
        if outside:
            raise WriteRefused(self.name, unit, outside)
        async with self._lock:
            await self._ensure_connected()
            await self._request(
                self._client.write_registers(address, values, device_id=unit),
                f"write {len(values)} @ {address} unit {unit}",
            )

    async def _request(self, request: object, what: str) -> list[int]:
        try:
            response = await asyncio.wait_for(request, self.timeout_s)  # type: ignore[arg-type]
        except TimeoutError:
            self._client.close()
            raise DeviceError("timeout", f"{self.name} {what}") from None
        except (ModbusException, ConnectionError, OSError) as exc:
            self._client.close()
            reason = "timeout" if "timeout" in str(exc).lower() else "disconnected"
            raise DeviceError(reason, f"{self.name} {what}: {exc}") from None
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            reason = f"exception {code} ({_EXCEPTION_REASONS.get(code, 'unknown')})"
            raise DeviceError(reason, f"{self.name} {what}")
        return list(getattr(response, "registers", []) or [])

    def close(self) -> None:
        """Close the connection; the next request reconnects."""
        self._client.close()


class LinkPool:
    """Hands out one :class:`ModbusLink` per host:port."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        self.timeout_s = timeout_s
        self._links: dict[tuple[str, int], ModbusLink] = {}

    def get(self, host: str, port: int) -> ModbusLink:
        """The shared link for ``host:port``, created on first use."""
        key = (host, port)
        if key not in self._links:
            self._links[key] = ModbusLink(host, port, self.timeout_s)
        return self._links[key]

    def close(self) -> None:
        """Close every link."""
        for link in self._links.values():
            link.close()
