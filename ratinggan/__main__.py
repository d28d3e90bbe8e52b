import sys

from ratinggan.cli import main

sys.exit(main())
