"""AdminService's money RPCs: RefundTransaction, AdjustWallet and the four-eyes approval
of large adjustments (ApproveWalletAdjustment, RejectWalletAdjustment,
ListWalletAdjustments). Money moves only through ledger rows (server/ledger); a gateway
refund goes through the payment gateway adapter (server/payments). docs/api.md
"AdminService: money" and docs/payments.md "Refunds".
"""
