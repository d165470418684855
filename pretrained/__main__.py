"""``python -m pretrained ...`` runs the ``pretrained`` command (see :mod:`pretrained.cli`)."""

from .cli import main

raise SystemExit(main())
