"""``python -m fastnn ...`` is the ``fastnn`` command."""

from .cli import main

raise SystemExit(main())
