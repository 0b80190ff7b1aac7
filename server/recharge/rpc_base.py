"""What the RechargeService RPC groups share (the servicer is split by topic)."""

from __future__ import annotations

from server.recharge.domain import Recharges
from server.resources import Resources


class RechargeRpcBase:
    """Attributes every RechargeService RPC group may use."""

    _recharges: Recharges
    _resources: Resources
