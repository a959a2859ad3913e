"""`python -m emocli.cli ...` runs the command line."""

import sys

from emocli.cli.app import main

sys.exit(main())
