"""Allows ``python -m nebctl``."""

from nebctl.cli import main

main()
