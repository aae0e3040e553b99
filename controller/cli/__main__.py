"""``python -m controller.cli``: the same as the ``commonwatt`` console script."""

import sys

from controller.cli import main

sys.exit(main())
