"""Pure units: no database, no server, no process; each runs in milliseconds."""
