"""AutoPay RPCs of RechargeService (CreateAutoPay, ListAutoPays, UpdateAutoPay,
DeleteAutoPay)."""

from __future__ import annotations

from server.recharge.rpc_base import RechargeRpcBase


class AutoPayRpcs(RechargeRpcBase):
    pass
