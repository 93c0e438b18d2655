"""Onboarding: apply to the authority for membership and store the issued credentials."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from d4h.audit.log import AuditLog
from d4h.errors import Conflict, Unauthenticated, Unavailable, UserError
from d4h.trust.credentials import verify_credential
from d4h.trust.did import did_from_url
from d4h.trust.service import NodeTrust

NODE_ROLE_TO_MEMBER_ROLE = {"holder": "dataHolder", "user": "dataUser", "authority": "hdab"}


def onboard(
    trust: NodeTrust,
    audit: AuditLog,
    *,
    authority_url: str,
    legal_name: str,
    registration_number: str,
    country: str,
    node_roles: Sequence[str],
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Apply (proving control of our DID), wait for the decision, verify and store the credentials."""
    if not authority_url:
        raise UserError(
            "no authority_url configured", hint="set authority_url in config.toml or D4H_AUTHORITY_URL"
        )
    authority_url = authority_url.rstrip("/")
    authority_did = did_from_url(authority_url)
    body = {
        "legal_name": legal_name,
        "registration_number": registration_number,
        "country": country,
        "roles": [NODE_ROLE_TO_MEMBER_ROLE[r] for r in node_roles],
    }
    with httpx.Client(base_url=authority_url, timeout=10.0) as http:
        try:
            resp = http.post(
                "/api/v1/authority/applications",
                json=body,
                headers=trust.authorization_for(authority_did, with_access=False),
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"authority at {authority_url} is unreachable: {exc}") from exc
        if resp.status_code == 409:
            raise Conflict(resp.json().get("message", "application refused"))
        if resp.status_code != 201:
            raise Unauthenticated(
                f"authority refused the application ({resp.status_code}): {resp.text[:200]}"
            )
        app_id = resp.json()["id"]
        deadline = time.monotonic() + timeout_s
        while True:
            resp = http.get(
                f"/api/v1/authority/applications/{app_id}",
                headers=trust.authorization_for(authority_did, with_access=False),
            )
            if resp.status_code == 200:
                break
            if resp.status_code != 202 or time.monotonic() > deadline:
                raise Unavailable(f"membership application {app_id} is still {resp.json().get('state', '?')}")
            time.sleep(0.5)
    message = resp.json()
    if message.get("status") != "ISSUED":
        raise Conflict(f"membership application {app_id} was rejected: {message.get('rejectionReason')}")
    tokens = [c["payload"] for c in message.get("credentials", [])]
    # Verify before storing: a node never presents a credential it could not verify itself.
    for token in tokens:
        verify_credential(
            token,
            resolver=trust.resolver,
            clock=trust.clock,
            trusted_issuers=(authority_did,),
            fetch_status_list=trust.fetch_status_list,
        )
    trust.store_credentials(tokens)
    audit.append(actor=trust.did, action="trust.onboard", obj=authority_did, params={"application": app_id})
    return {"application": app_id, "credentials": len(tokens), "authority": authority_did}
