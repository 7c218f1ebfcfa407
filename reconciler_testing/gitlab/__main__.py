"""`python -m reconciler_testing.gitlab`."""

import sys

from reconciler_testing.gitlab.cli import main

sys.exit(main())
