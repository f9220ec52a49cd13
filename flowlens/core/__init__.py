"""The core: capture -> decode -> connections, each endpoint's TCP state and Zeek's rules."""
