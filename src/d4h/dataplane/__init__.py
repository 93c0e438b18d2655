"""[H] The provider's data plane: short-lived, scoped bearer tokens for pull transfers, and their endpoints."""
