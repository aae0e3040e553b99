"""Modbus TCP transport shared by every Modbus device driver."""

from devices.modbus.transport import DeviceError, LinkPool, ModbusLink

__all__ = ["DeviceError", "LinkPool", "ModbusLink"]
