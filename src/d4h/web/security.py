"""Security plumbing of the web UI: response headers, cookies, CSRF tokens."""

from __future__ import annotations

import hmac
import secrets

from starlette.responses import Response

SESSION_COOKIE = "d4h_session"
LOGIN_CSRF_COOKIE = "d4h_csrf"  # pre-session double-submit token (login form, public forms)
CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def apply_headers(response: Response, *, authenticated: bool) -> Response:
    """Headers every UI response carries; authenticated pages must never be cached."""
    h = response.headers
    h["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if authenticated or "cache-control" not in h:
        h["Cache-Control"] = "no-store"
    return response


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an absent or empty token never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def set_cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    # SameSite=Strict: no cross-site request ever carries the cookie; HttpOnly: no script reads it.
    response.set_cookie(
        name, value, max_age=max_age, path="/ui", secure=secure, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path="/ui", secure=secure, httponly=True, samesite="strict")
