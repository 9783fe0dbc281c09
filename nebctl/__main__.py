"""Allows ``python -m nebctl``."""

from nebctl.controller.cli import main

main()
