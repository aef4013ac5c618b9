"""``python -m toplib``: the same as the ``toplib`` command (its exit status too)."""
import sys

from .cli import main

sys.exit(main())
