"""The ``twochat-voip`` command (the ``cli`` extra): click commands, one module per
group: export and demo in ``_main``, ``sync``, ``fake-server``; shared options and
their checks in ``_options`` and ``_support``."""

from __future__ import annotations

from twochat_voip.cli._main import main

__all__ = ["main"]
