"""The ledger: every money movement is a ``transactions`` row (DDS Transactions), and
referral rewards (DDS ReferralRewards). The wallet and recharge domains write their
rows through this package only; the database trigger ``update_wallet_balance`` moves
``users.wallet_balance`` when a wallet row succeeds (docs/data-model.md).

- :mod:`server.ledger.queries`: the only SQL on ``transactions`` and ``referralrewards``,
  including the SQL fragments the one-statement recharge is built from;
- :mod:`server.ledger.domain`: typed ledger values and the operations on them;
- :mod:`server.ledger.convert`: ledger values -> ``gencharge.v1.Transaction`` and
  ``ReferralReward`` messages (used by the wallet and recharge servicers).
"""
