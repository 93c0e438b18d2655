"""Exit codes of the d4h CLI, one per class of outcome (shown in `d4h --help`)."""

from __future__ import annotations

from d4h.errors import D4HError, Forbidden, NotFound, Unauthenticated, Unavailable, UserError

OK = 0
CHECK_FAILED = 1  # the command ran and found a problem (e.g. a tampered audit log)
BAD_INPUT = 2  # bad arguments, configuration or input files
UNAVAILABLE = 3  # a database or peer could not be reached, or a port is taken
DENIED = 4  # authentication or authorisation refused
NOT_FOUND = 5
INTERNAL = 70  # a bug: please report it with the log


def for_error(exc: D4HError) -> int:
    if isinstance(exc, Unavailable):
        return UNAVAILABLE
    if isinstance(exc, Unauthenticated | Forbidden):
        return DENIED
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, UserError):
        return BAD_INPUT
    return CHECK_FAILED
