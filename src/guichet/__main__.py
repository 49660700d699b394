"""``python -m guichet``: the ``guichet`` command."""
import sys

from guichet.core.cli import main

sys.exit(main())
