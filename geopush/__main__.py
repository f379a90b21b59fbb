"""`python -m geopush ...` is the `geopush` command."""

from geopush.cli import main

main()
