"""``python -m callbacks.cli``: the ``callbacks`` command where its script is not installed."""

from callbacks.cli import main

main()
