"""``python -m toplib``: the same as the ``toplib`` command."""
from .cli import main

main()
