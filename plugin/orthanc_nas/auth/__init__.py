"""Authentication and authorization: PINs, TOTP, sessions, tokens, lockout, role policy."""
