"""`python -m shipbook`: the one entry point the Makefile calls."""

import sys

from shipbook.cli import main

sys.exit(main())
