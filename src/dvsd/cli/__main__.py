import sys

from dvsd.cli import main

sys.exit(main())
