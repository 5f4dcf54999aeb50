"""`python -m bertkit` runs the command line (torchrun launches it this way too)."""
from bertkit.cli import main

raise SystemExit(main())
