"""The HTTP API and what it drives, in process: a real PostgreSQL, the aiohttp server over
loopback, the FCM emulator (a few also call the CLI)."""
