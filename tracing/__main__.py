"""``python -m tracing ...`` runs the ``eventchain`` command line."""

from tracing.cli import main

raise SystemExit(main())
