"""``python -m lintas.cli``: the same as the ``lintas`` command."""

import sys

from lintas.cli import main

sys.exit(main())
