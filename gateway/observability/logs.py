"""Logging set-up, for the CLI and for each worker process (which starts with none)."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "tandem.access"


def configure_logging(level: str) -> None:
    """Plain lines for the gateway's own messages; the access log's lines are bare JSON.
    Idempotent: the CLI and the app factory may both call it in one process."""
    access = logging.getLogger(ACCESS_LOGGER)
    if getattr(access, "_tandem_configured", False):
        return
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False
    access._tandem_configured = True  # type: ignore[attr-defined]
