"""GenCharge: the async gRPC mobile recharge service."""

import os

# The service never forks with live gRPC state (embedded database servers are started
# with fork+exec), so gRPC's fork handlers only add log noise; turn them off unless
# the operator chose otherwise.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
