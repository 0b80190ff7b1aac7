"""Recharges: quotes, wallet and externally paid recharges, active plans and queues."""
