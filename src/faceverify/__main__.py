"""``python -m faceverify`` runs the CLI."""

import sys

from faceverify.cli.main import main

sys.exit(main())
