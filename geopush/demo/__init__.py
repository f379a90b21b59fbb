"""`geopush demo`: the whole product on one machine, running until stopped.

It starts the embedded PostgreSQL (data under `.geopush/`), the FCM emulator and geopush;
sets up stores where real GeoLife traces go, a CRM with every FRAT segment and four
offers through the HTTP API; then phones replay the traces (sped up, looping) while a
summary is redrawn in the terminal and the console and dashboard are open in a browser.
Ctrl-C stops everything, the embedded PostgreSQL included. Logs go to `.geopush/demo.log`.
"""

from __future__ import annotations

from geopush.demo.run import run_demo

__all__ = ["run_demo"]
