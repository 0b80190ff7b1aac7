"""Payment recovery: the scheduler's job that settles charges left between the gateway
and the ledger (payment attempts still ``charging``; docs/payments.md). It asks the
gateway and records the outcome with the same domain functions as the live calls (the
wallet's top-up, the recharge's external payment), so it sits above both."""
