"""What every CLI module shares: the stderr console and logging set-up."""

from __future__ import annotations

import logging

from rich.console import Console

console = Console(stderr=True)


def configure_logging() -> None:
    """Log warnings and errors to stderr (no PHI is ever logged; see STYLE H22)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
