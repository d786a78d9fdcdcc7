"""The voxlake data pipeline as plain Python: connectors, planning, lake I/O and the CLI."""
