"""``python -m tomodrgn.cli`` (what ``torchrun -m tomodrgn.cli`` runs)."""

from tomodrgn.cli import entry

entry()
