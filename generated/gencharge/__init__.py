"""GenCharge generated gRPC code (see protos/ and tools/generate.py)."""
