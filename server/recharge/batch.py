"""BatchRecharge: the bidirectional stream for internal services."""

from __future__ import annotations

from server.recharge.rpc_base import RechargeRpcBase


class BatchRpcs(RechargeRpcBase):
    pass
