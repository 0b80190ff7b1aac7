"""What the RechargeService RPC groups share (the servicer is split by topic)."""

from __future__ import annotations

from server.core.resources import Resources
from server.recharge.domain import Recharges


class RechargeRpcBase:
    """Attributes every RechargeService RPC group may use."""

    _recharges: Recharges
    _resources: Resources
