"""`python -m shipbook.sandbox.aws_twin --port P --state-dir DIR [--host 127.0.0.1]`."""

from __future__ import annotations

import sys

from .server import main

sys.exit(main())
