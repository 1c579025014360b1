"""``python -m envleads.cli``: the ``envleads`` command."""
import sys

from envleads.cli import main

sys.exit(main())
