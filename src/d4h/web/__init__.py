"""The node's web UI (server-rendered, no external requests): accounts, sessions, security, screens."""

from d4h.web.routes import web_router

__all__ = ["web_router"]
