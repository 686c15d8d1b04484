import sys

from robustft.cli import main

sys.exit(main())
