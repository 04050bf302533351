"""`python -m driver_sim`."""

import sys

from driver_sim.cli import main

sys.exit(main())
