"""WalletService: the wallet, top-ups through the payment gateway, the ledger, rewards."""
