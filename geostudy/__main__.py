"""`python -m geostudy ...`: the command line of geostudy/cli.py."""

import sys

from .cli import main

sys.exit(main())
