"""``python -m mlp_xp``: the ``mlp-xp`` command."""

import sys

from .cli import main

sys.exit(main())
