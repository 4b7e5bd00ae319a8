"""``python -m orthanc_nas.backup``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
