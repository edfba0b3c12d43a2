"""``python -m hostd.cli``: the same as the ``hostd`` command."""

from __future__ import annotations

import sys

from hostd.cli.main import main

sys.exit(main())
