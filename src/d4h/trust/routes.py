"""Trust endpoints: DID document, Credential Service, trust management, and the authority's issuer API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, Field

from d4h.errors import NotFound
from d4h.node.deps import AdminDep, CallerDep, NodeDep
from d4h.node.media import VcJwtResponse
from d4h.trust.credentials import verify_credential
from d4h.trust.issuer import Issuer
from d4h.trust.onboarding import onboard
from d4h.trust.repository import Application
from d4h.trust.tokens import IdToken

public_router = APIRouter(tags=["trust"])
admin_router = APIRouter(prefix="/api/v1/trust", tags=["trust"])
authority_router = APIRouter(tags=["authority"])


# -- public -------------------------------------------------------------------------------------


@public_router.get("/.well-known/did.json", operation_id="trust-did-document")
def did_document(node: NodeDep) -> dict[str, Any]:
    return node.trust.did_document()


@public_router.post("/dcp/presentations/query", operation_id="trust-presentation-query")
def presentation_query(
    node: NodeDep, request: Request, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """DCP Credential Service: answers a verifier that holds an access token we minted for it."""
    answer = node.trust.answer_presentation_query(request.headers.get("authorization"), body)
    node.audit.append(
        actor=node.actor,
        action="trust.presentation",
        obj="presentation-query",
        params={"scope": body.get("scope")},
    )
    return answer


class ParticipantPublic(BaseModel):
    did: str
    roles: list[str]
    claims: dict[str, Any]


@public_router.get("/api/v1/participants/me", operation_id="trust-whoami")
def whoami(caller: CallerDep) -> ParticipantPublic:
    """Echo the verified participant: what a peer's node proved about itself (used by self-checks)."""
    return ParticipantPublic(did=caller.did, roles=sorted(caller.roles), claims=dict(caller.claims))


# -- management (admin) -------------------------------------------------------------------------


class CredentialPublic(BaseModel):
    id: str | None
    types: list[str]
    issuer: str
    valid_until: str | None
    status: str  # valid | revoked | expired | untrusted | unverifiable: <reason>


class TrustStatus(BaseModel):
    did: str
    key_ids: list[str]
    trusted_issuers: list[str]
    credentials: list[CredentialPublic]


@admin_router.get("", operation_id="trust-show")
def show(node: NodeDep, admin: AdminDep) -> TrustStatus:
    creds = []
    for row in node.trust.credentials.rows():
        creds.append(
            CredentialPublic(
                id=row["id"],
                types=row["types"].split(),
                issuer=row["issuer"],
                valid_until=row["valid_until"],
                status=_status_of(node, row["jwt"]),
            )
        )
    return TrustStatus(
        did=node.trust.did,
        key_ids=[k.kid for k in node.trust.keyring.all_keys()],
        trusted_issuers=sorted(node.trust.trusted_issuers),
        credentials=creds,
    )


def _status_of(node: Any, token: str) -> str:
    from d4h.errors import D4HError

    try:
        verify_credential(
            token,
            resolver=node.trust.resolver,
            clock=node.clock,
            trusted_issuers=node.trust.trusted_issuers,
            fetch_status_list=node.trust.fetch_status_list,
        )
        return "valid"
    except D4HError as exc:
        text = exc.message
        for word in ("revoked", "expired", "not trusted", "untrusted"):
            if word in text:
                return f"{word}: {text}"
        return f"unverifiable: {text}"


class OnboardResult(BaseModel):
    application: str
    credentials: int
    authority: str


@admin_router.post("/onboard", operation_id="trust-onboard")
def onboard_route(node: NodeDep, admin: AdminDep) -> OnboardResult:
    """Apply to the configured authority for membership and store the issued credentials."""
    s = node.settings
    result = onboard(
        node.trust,
        node.audit,
        authority_url=s.authority_url or (s.base_url if node.issuer else ""),
        legal_name=s.participant.legal_name or s.participant.name,
        registration_number=s.participant.registration_number or "unregistered",
        country=s.participant.country,
        node_roles=[r.value for r in s.roles],
    )
    return OnboardResult(**result)


class PeerCheckIn(BaseModel):
    peer_url: str = Field(min_length=8, max_length=500, description="base URL of the peer node")


class PeerCheck(BaseModel):
    peer_did: str
    verified_as: ParticipantPublic


@admin_router.post("/check", operation_id="trust-check-peer")
def check_peer(node: NodeDep, admin: AdminDep, body: PeerCheckIn) -> PeerCheck:
    """Authenticate to a peer (SI token + our presentation) and show what the peer verified about us.

    Run against this node's own URL it is the self-check: resolve own DID, mint and verify a token,
    query own Credential Service.
    """
    peer_did, answer = node.trust.call_peer("GET", body.peer_url, "/api/v1/participants/me")
    return PeerCheck(peer_did=peer_did, verified_as=ParticipantPublic(**answer))


class RotateResult(BaseModel):
    active: str
    retired: list[str]


@admin_router.post("/keys/rotate", operation_id="trust-rotate-keys")
def rotate_keys(node: NodeDep, admin: AdminDep) -> RotateResult:
    ring = node.trust.rotate_keys()
    node.audit.append(actor=admin, action="trust.rotate", obj=node.trust.did, params={"kid": ring.active.kid})
    return RotateResult(active=ring.active.kid, retired=[k.kid for k in ring.retired])


# -- authority ----------------------------------------------------------------------------------


def _issuer(node: Any) -> Issuer:
    if node.issuer is None:
        raise NotFound("this node is not a dataspace authority")
    issuer: Issuer = node.issuer
    return issuer


class MembershipApplicationIn(BaseModel):
    legal_name: str = Field(min_length=1, max_length=300)
    registration_number: str = Field(min_length=1, max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    roles: list[str] = Field(min_length=1, max_length=3)


class ApplicationPublic(BaseModel):
    id: str
    did: str
    legal_name: str
    roles: list[str]
    state: str
    reason: str | None
    created_at: str
    decided_at: str | None


def _public(app: Application) -> ApplicationPublic:
    return ApplicationPublic(
        id=app.id,
        did=app.did,
        legal_name=app.legal_name,
        roles=list(app.roles),
        state=app.state,
        reason=app.reason,
        created_at=app.created_at,
        decided_at=app.decided_at,
    )


def _did_control(node: NodeDep, request: Request) -> IdToken:
    # A dependency, so the caller's proof of DID control is checked before the body is parsed.
    return node.trust.authenticate_did_only(request.headers.get("authorization"))


@authority_router.post(
    "/api/v1/authority/applications", status_code=201, operation_id="authority-apply", tags=["authority"]
)
def apply(
    node: NodeDep, token: Annotated[IdToken, Depends(_did_control)], body: MembershipApplicationIn
) -> ApplicationPublic:
    """A participant applies for membership, proving control of its DID with a self-issued token."""
    app = _issuer(node).apply(
        did=token.subject,
        legal_name=body.legal_name,
        registration_number=body.registration_number,
        country=body.country,
        roles=body.roles,
    )
    return _public(app)


@authority_router.get("/api/v1/authority/applications/{app_id}", operation_id="authority-application")
def application(node: NodeDep, request: Request, app_id: str, response: Response) -> dict[str, Any]:
    """The applicant polls: 202 with the state while pending, 200 with a DCP CredentialMessage once decided."""
    token = node.trust.authenticate_did_only(request.headers.get("authorization"))
    issuer = _issuer(node)
    app = issuer.application_for(app_id, token.subject)
    if app.state == "SUBMITTED":
        response.status_code = 202
        return _public(app).model_dump()
    return issuer.credential_message(app)


@authority_router.get("/api/v1/authority/members", operation_id="authority-members")
def members(node: NodeDep, admin: AdminDep) -> list[ApplicationPublic]:
    return [_public(a) for a in _issuer(node).list_applications()]


@authority_router.post("/api/v1/authority/applications/{app_id}/approve", operation_id="authority-approve")
def approve(node: NodeDep, admin: AdminDep, app_id: str) -> ApplicationPublic:
    return _public(_issuer(node).approve(app_id, actor=admin))


class Decision(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@authority_router.post("/api/v1/authority/applications/{app_id}/reject", operation_id="authority-reject")
def reject(node: NodeDep, admin: AdminDep, app_id: str, body: Decision) -> ApplicationPublic:
    return _public(_issuer(node).reject(app_id, reason=body.reason, actor=admin))


class Revocation(BaseModel):
    did: str = Field(min_length=8, max_length=500)
    reason: str = Field(min_length=1, max_length=2000)


@authority_router.post("/api/v1/authority/revocations", operation_id="authority-revoke")
def revoke(node: NodeDep, admin: AdminDep, body: Revocation) -> ApplicationPublic:
    return _public(_issuer(node).revoke(body.did, reason=body.reason, actor=admin))


@authority_router.get("/status/{list_id}", response_class=VcJwtResponse, operation_id="authority-status-list")
def status_list(node: NodeDep, list_id: str) -> Response:
    """The signed BitstringStatusListCredential (public, as verifiers need it)."""
    return VcJwtResponse(_issuer(node).status_list_token(list_id))
