"""AutoPay mandates (DDS AutoPay): servicer (CreateAutoPay, ListAutoPays, UpdateAutoPay,
DeleteAutoPay), convert, domain (the rules, and executing a due mandate), flows (the
scheduler's autopay job) and queries (the only SQL on ``autopay``)."""
