"""The ``twochat-voip`` command (the ``cli`` extra): get, export and sync in ``_main``,
demo and fake-server in ``_fake``, their options in ``_options``, running them in
``_support``."""

from __future__ import annotations

from twochat_voip.cli._main import main

__all__ = ["main"]
