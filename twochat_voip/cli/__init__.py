"""The ``twochat-voip`` command (the ``cli`` extra)."""

from __future__ import annotations

from twochat_voip.cli._main import main

__all__ = ["main"]
