"""`python -m stito_server` runs the `stito` command line."""

import sys

from .cli import main

sys.exit(main())
