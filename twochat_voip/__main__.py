"""``python -m twochat_voip``: the same as the ``twochat-voip`` command."""

from twochat_voip.cli import main

main(prog_name="twochat-voip")
