import sys

from regbench.cli.main import main

sys.exit(main())
