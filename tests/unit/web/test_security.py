"""Header and CSRF token helpers."""

from __future__ import annotations

from starlette.responses import Response

from d4h.web.security import CONTENT_SECURITY_POLICY, apply_headers, new_token, tokens_match


def test_tokens_match_only_equal_non_empty_tokens() -> None:
    token = new_token()
    assert len(token) >= 40
    assert tokens_match(token, token)
    assert not tokens_match(token, new_token())
    assert not tokens_match("", "")
    assert not tokens_match(None, token)
    assert not tokens_match(token, None)


def test_authenticated_responses_are_never_cached() -> None:
    response = apply_headers(Response(headers={"Cache-Control": "max-age=60"}), authenticated=True)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_public_static_files_keep_their_caching() -> None:
    response = apply_headers(Response(headers={"Cache-Control": "public, max-age=3600"}), authenticated=False)
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
