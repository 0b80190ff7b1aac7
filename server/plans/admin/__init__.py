"""Changing the catalogue (the admin RPCs of PlanService: plans, offers, plan groups,
offer types): domain (the rules of each change) and queries (the only SQL that writes
``plans``, ``offers``, ``plangroups`` and ``offertypes``). The servicer and conversions
are PlanService's own (server/plans/servicer.py, convert.py)."""
