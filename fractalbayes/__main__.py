"""``python -m fractalbayes``: the command line (see ``fractalbayes --help``)."""

import sys

from fractalbayes.suite.cli import main

sys.exit(main())
