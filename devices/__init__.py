"""Device drivers: Modbus transport, SunSpec, and the typed device kinds."""
