import sys

from emorl.cli import main

sys.exit(main())
