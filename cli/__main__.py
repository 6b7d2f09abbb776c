"""``python -m lintas.cli``: the same as the ``lintas`` command."""

import sys

from . import main

sys.exit(main())
