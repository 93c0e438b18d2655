"""Federated analytics: vetted functions, disclosure control, differencing audit, secure aggregation, DP."""
