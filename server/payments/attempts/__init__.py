"""Payment attempts: one row per external charge (``payment_attempts``), so that no charge
is left between the gateway and the ledger (docs/payments.md, "Payment attempts and
recovery"). ``domain`` has the rules, ``queries`` the only SQL on the table, ``flows``
the charge-then-record steps the top-up and recharge flows share; the recovery job that
settles attempts left behind is server/recovery."""
