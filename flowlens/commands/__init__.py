"""One module per `flowlens` command; cli.py registers them. Shared options live in _common."""
