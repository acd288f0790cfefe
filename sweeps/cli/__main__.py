"""``python -m sweeps.cli``: the ``prunetune`` command."""

import sys

from sweeps.cli.commands import main

sys.exit(main())
