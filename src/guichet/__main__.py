"""``python -m guichet``: the ``guichet`` command."""

import sys

from guichet.cli import main

sys.exit(main())
