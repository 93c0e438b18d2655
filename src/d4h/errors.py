"""The d4h error tree: every expected failure is a subclass of ``D4HError``.

    D4HError
    ├── UserError            bad input or configuration; shown as one line, never a traceback
    │   └── ConfigError      a malformed or unsafe node configuration
    ├── NotFound             unknown entity (also used for entities the caller may not see)
    ├── Conflict             the entity exists or changed concurrently
    ├── Unauthenticated      no or invalid credentials
    ├── Forbidden            authenticated, but not allowed
    ├── IllegalTransition    a state machine refused a move
    ├── PolicyDenied         a usage policy refused; ``reasons`` names failed constraints
    └── Unavailable          a dependency (database, peer) cannot be reached

HTTP status mapping lives in one table (``d4h.node.errors``); the CLI maps to exit codes.
"""

from __future__ import annotations


class D4HError(Exception):
    """Base of every expected d4h error."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and, when known, the fix, on one line."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UserError(D4HError):
    code = "bad_request"


class ConfigError(UserError):
    code = "bad_config"


class NotFound(D4HError):
    code = "not_found"


class Conflict(D4HError):
    code = "conflict"


class Unauthenticated(D4HError):
    code = "unauthenticated"


class Forbidden(D4HError):
    code = "forbidden"


class IllegalTransition(D4HError):
    code = "illegal_transition"

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"{entity}: transition {current} -> {target} is not allowed")
        self.entity = entity
        self.current = current
        self.target = target


class PolicyDenied(D4HError):
    code = "policy_denied"

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class Unavailable(D4HError):
    code = "unavailable"
