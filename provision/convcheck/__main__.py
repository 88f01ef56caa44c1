"""Entry point: ``python -m provision.convcheck``."""

import sys

from provision.convcheck.cli import main

sys.exit(main())
