"""``python -m restore`` (and ``accelerate launch -m restore train -opt FILE``)."""

import sys

from restore.cli import main

sys.exit(main())
