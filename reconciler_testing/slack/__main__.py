"""`python -m reconciler_testing.slack`."""

import sys

from reconciler_testing.slack.cli import main

sys.exit(main())
