"""A pymodbus 3.16 TCP server on 127.0.0.1 that serves register images, with faults.

Each unit id behind the port serves one :class:`SunSpecImage` (or any object
with ``base`` and ``regs``). Reads copy the live image into the response;
writes land in the image and are reported to ``on_write``. Faults can be
switched on per unit for fault-injection tests.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections.abc import Callable
from functools import partial
from typing import Protocol

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

READ_CODES = {3, 4}


class Fault(enum.Enum):
    """A misbehaviour a simulated device can be told to show."""

    NONE = "none"
    TIMEOUT = "timeout"  # answers nothing
    EXCEPTION = "exception"  # Modbus exception 4, device failure
    DISCONNECT = "disconnect"  # closes the connection
    GARBAGE = "garbage"  # every register reads 0x8000/0xFFFF sentinels


class RegisterImage(Protocol):
    """What the server needs from an image: where it starts and its registers."""

    base: int
    regs: list[int]


WriteHook = Callable[[int, int, list[int]], None]


class SimulatedModbusServer:
    """Serves register images for several unit ids on one 127.0.0.1 port."""

    def __init__(
        self,
        port: int,
        images: dict[int, RegisterImage],
        on_write: WriteHook | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.images = images
        self.faults: dict[int, Fault] = dict.fromkeys(images, Fault.NONE)
        self.on_write = on_write
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        """Start listening; must be called inside the running event loop."""
        devices = [
            SimDevice(
                id=unit,
                simdata=[
                    SimData(
                        address=image.base,
                        values=list(image.regs),
                        count=1,
                        datatype=DataType.REGISTERS,
                    )
                ],
                action=partial(self._action, unit),
            )
            for unit, image in self.images.items()
        ]
        if 0 not in self.images:
            # Like a gateway: a unit id nobody answers to gets exception 11, not silence.
            devices.append(SimDevice(
                id=0,
                simdata=[SimData(address=0, values=[0], count=65535, datatype=DataType.REGISTERS)],
                action=self._no_such_unit,
            ))
        for attempt in range(5):
            self._server = ModbusTcpServer(devices, address=(self.host, self.port))
            try:
                await self._server.serve_forever(background=True)
                return
            except RuntimeError:
                # The free port picked earlier was taken meanwhile (the kernel also hands
                # ephemeral ports to outgoing connections): take another one.
                if attempt == 4:
                    raise
                self.port = _another_port(self.host)

    async def stop(self) -> None:
        """Stop listening and drop connections (call :meth:`start` before reading ``port``)."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def _no_such_unit(self, *args: object) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        fault = self.faults.get(unit, Fault.NONE)
        if fault is Fault.TIMEOUT:
            await asyncio.sleep(3600)
        if fault is Fault.EXCEPTION:
            return ExcCodes.DEVICE_FAILURE
        if fault is Fault.DISCONNECT and self._server is not None:
            for connection in list(self._server.active_connections.values()):
                connection.close()
            return ExcCodes.DEVICE_FAILURE
        image = self.images[unit]
        offset = address - start_address
        if values is None and function_code in READ_CODES:
            if fault is Fault.GARBAGE:
                registers[offset : offset + count] = [0x8000] * count
            else:
                registers[offset : offset + count] = image.regs[offset : offset + count]
            return None
        if values is not None:
            written = [int(v) for v in values]
            image.regs[offset : offset + len(written)] = written
            if self.on_write is not None:
                self.on_write(unit, offset, written)
        return None


def _another_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
