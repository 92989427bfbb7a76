"""`python -m scaling`: see scaling.cli."""

import sys

from .cli import main

sys.exit(main())
