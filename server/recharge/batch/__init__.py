"""BatchRecharge: servicer (the stream, its window and per-item scopes) and flows (one
item, and the audit of a failed one). An item is a wallet recharge: its rules and SQL
are the recharge domain's."""
