"""The runtime: configuration, the control cycle, safety, storage and the CLI."""
