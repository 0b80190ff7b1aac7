"""The load generator and ceilings of `make bench` (see bench/README.md)."""
