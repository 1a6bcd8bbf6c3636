"""`python -m ftkit ...`: the kit's command line, also what `torchrun -m ftkit ...` starts on each rank."""

import sys

from ftkit.cli import main

sys.exit(main())
