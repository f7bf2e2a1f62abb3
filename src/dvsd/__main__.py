"""``python -m dvsd``: run the daemon in the foreground."""

import sys

from dvsd.daemon import main

sys.exit(main())
