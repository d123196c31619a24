"""``python -m opsloop.cli`` is the ``opsloop`` command."""

import sys

from . import main

sys.exit(main())
