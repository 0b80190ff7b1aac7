"""GenCharge: the async gRPC mobile recharge service."""
