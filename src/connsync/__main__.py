from __future__ import annotations

from connsync.cli import main

raise SystemExit(main())
