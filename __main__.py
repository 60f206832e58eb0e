"""``python -m runtime_metadata``."""

import sys

from .cli import main

sys.exit(main())
