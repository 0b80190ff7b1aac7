"""Bill-reminder RPCs of RechargeService (ListBillReminders, PayBill)."""

from __future__ import annotations

from server.recharge.rpc_base import RechargeRpcBase


class BillRpcs(RechargeRpcBase):
    pass
