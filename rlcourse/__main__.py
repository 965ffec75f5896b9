import sys

from rlcourse.cli import main

sys.exit(main())
