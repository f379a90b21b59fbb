"""End to end with processes: `geopush serve` and the CLI as subprocesses, faults (a killed
sender, a restarted PostgreSQL), the demo, a Citus cluster."""
