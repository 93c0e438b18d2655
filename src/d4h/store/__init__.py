"""Persistence primitives: engine factory, tables, leases and migrations."""
