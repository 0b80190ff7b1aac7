"""AdminService: customer accounts (list, read, block, archive, sessions, data export
and erasure)."""
