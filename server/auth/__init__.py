"""Identity and access: password hashing, tokens, sessions."""
