"""python -m flowlens: the same commands as the `flowlens` script."""

from .cli import main

main()
