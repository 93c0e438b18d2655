"""SQLAlchemy table definitions, one module per domain, on one shared MetaData."""

from d4h.store.tables import analytics as _analytics  # noqa: F401  (registers tables)
from d4h.store.tables import audit as _audit  # noqa: F401
from d4h.store.tables import connector as _connector  # noqa: F401
from d4h.store.tables import hdab as _hdab  # noqa: F401
from d4h.store.tables import leases as _leases  # noqa: F401
from d4h.store.tables import node as _node  # noqa: F401
from d4h.store.tables import trust as _trust  # noqa: F401
from d4h.store.tables import web as _web  # noqa: F401
from d4h.store.tables.base import metadata

__all__ = ["metadata"]
