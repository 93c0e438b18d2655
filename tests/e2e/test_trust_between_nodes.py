"""DCP between real node processes: onboarding, verified calls, and every refusal case with its audit entry.

The hospital node is the verifier. A test-controlled participant (its DID document and Credential
Service served from a loopback HTTP server) holds real credentials from the authority and misbehaves.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from d4h.node.settings import Role
from d4h.trust.credentials import issue_credential, membership_credential
from d4h.trust.did import did_from_url
from d4h.trust.jose import sign
from d4h.trust.keys import generate_key, load_keyring, new_keyring
from d4h.trust.presentations import build_presentation
from tests.e2e.dataspace import Dataspace, FakeParticipant, start_dataspace

WHOAMI = "/api/v1/participants/me"


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("trust-space")
    yield from start_dataspace(workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER)))


@pytest.fixture
def fake(space: Dataspace) -> Iterator[FakeParticipant]:
    participant = FakeParticipant()
    participant.apply(space["authority"])
    yield participant
    participant.close()


def _call(space: Dataspace, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.get(space["hospital"].url + WHOAMI, headers=headers)


def _refused(space: Dataspace, authorization: str | None, expected: str) -> None:
    """The call is refused with 401, the reason names the failed check, and an audit entry records it."""
    hospital = space["hospital"]
    before = space.audit_head(hospital)
    resp = _call(space, authorization)
    assert resp.status_code == 401, resp.text
    assert expected in resp.json()["message"], resp.json()["message"]
    refusals = [e for e in space.audit_since(hospital, before) if e["action"] == "auth.refused"]
    assert refusals, "no audit entry for the refusal"
    assert expected in refusals[-1]["object"]
    assert refusals[-1]["outcome"] == "refused"


def _tamper(token: str, part: int, change: dict[str, object] | None = None) -> str:
    pieces = token.split(".")
    if change is not None:
        claims = json.loads(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
        claims.update(change)
        pieces[part] = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    else:
        sig = bytearray(base64.urlsafe_b64decode(pieces[2] + "=" * (-len(pieces[2]) % 4)))
        sig[0] ^= 0x01
        pieces[2] = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    return ".".join(pieces)


# -- the happy paths ---------------------------------------------------------------------------


def test_onboarded_nodes_verify_each_other_with_roles(space: Dataspace) -> None:
    for caller, peer, role in (
        ("institute", "hospital", "dataUser"),
        ("hospital", "institute", "dataHolder"),
    ):
        node = space[caller]
        resp = httpx.post(
            f"{node.url}/api/v1/trust/check",
            headers=node.admin(),
            json={"peer_url": space[peer].url},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["verified_as"]["did"] == node.did
        assert resp.json()["verified_as"]["roles"] == [role]
        assert resp.json()["verified_as"]["claims"]["legalAddressCountry"] == "FI"


def test_did_document_has_keys_relationships_and_services(space: Dataspace) -> None:
    doc = httpx.get(space["hospital"].url + "/.well-known/did.json").json()
    assert doc["id"] == space["hospital"].did
    kid = doc["verificationMethod"][0]["id"]
    for rel in ("authentication", "assertionMethod", "capabilityInvocation"):
        assert kid in doc[rel]
    types = {s["type"] for s in doc["service"]}
    assert {"DataService", "CatalogService", "CredentialService"} <= types


def test_trust_show_lists_valid_credentials(space: Dataspace) -> None:
    node = space["institute"]
    data = httpx.get(f"{node.url}/api/v1/trust", headers=node.admin()).json()
    statuses = {" ".join(c["types"]): c["status"] for c in data["credentials"]}
    assert len(statuses) == 2
    assert set(statuses.values()) == {"valid"}


def test_honest_fake_participant_is_accepted(space: Dataspace, fake: FakeParticipant) -> None:
    resp = _call(space, f"Bearer {fake.token_for(space['hospital'].did)}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["did"] == fake.did
    assert resp.json()["roles"] == ["dataUser"]


# -- one refusal per case --------------------------------------------------------------------


def test_refused_when_bearer_missing(space: Dataspace) -> None:
    _refused(space, None, "Authorization")
    _refused(space, "Basic dXNlcjpwYXNz", "Bearer")


def test_refused_when_audience_is_another_node(space: Dataspace, fake: FakeParticipant) -> None:
    _refused(space, f"Bearer {fake.token_for(space['institute'].did)}", "aud")


def test_refused_when_iss_differs_from_sub(space: Dataspace, fake: FakeParticipant) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": fake.did,
        "sub": space["institute"].did,
        "aud": space["hospital"].did,
        "jti": "iss-sub-mismatch",
        "iat": now,
        "exp": now + 60,
        "token": "x",
    }
    token = sign(claims, fake.ring.active, kid=f"{fake.did}#{fake.ring.active.kid}", typ="JWT")
    _refused(space, f"Bearer {token}", "iss")


def test_refused_when_expired(space: Dataspace, fake: FakeParticipant) -> None:
    token = fake.token_for(space["hospital"].did, at=datetime.now(UTC) - timedelta(minutes=10))
    _refused(space, f"Bearer {token}", "expired")


def test_refused_when_not_yet_valid(space: Dataspace, fake: FakeParticipant) -> None:
    later = datetime.now(UTC) + timedelta(minutes=3)
    token = fake.token_for(space["hospital"].did, not_before=later)
    _refused(space, f"Bearer {token}", "not valid yet")


def test_refused_when_jti_is_replayed(space: Dataspace, fake: FakeParticipant) -> None:
    token = fake.token_for(space["hospital"].did)
    assert _call(space, f"Bearer {token}").status_code == 200
    _refused(space, f"Bearer {token}", "replay")


def test_refused_when_key_id_is_unknown(space: Dataspace, fake: FakeParticipant) -> None:
    stranger = generate_key("Ed25519", at=datetime.now(UTC))
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": fake.did,
        "sub": fake.did,
        "aud": space["hospital"].did,
        "jti": "unknown-kid",
        "iat": now,
        "exp": now + 60,
        "token": "x",
    }
    token = sign(claims, stranger, kid=f"{fake.did}#{stranger.kid}", typ="JWT")
    _refused(space, f"Bearer {token}", "unknown kid")


def test_refused_when_key_lacks_capability_invocation(space: Dataspace, fake: FakeParticipant) -> None:
    fake.did_document = dict(fake.did_document, capabilityInvocation=[])
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "capabilityInvocation")


def test_refused_when_sub_is_not_the_did_document_id(space: Dataspace, fake: FakeParticipant) -> None:
    fake.did_document = dict(fake.did_document, id="did:web:127.0.0.1%3A1")
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "DID document")


def test_refused_when_presentation_signed_by_another_did(space: Dataspace, fake: FakeParticipant) -> None:
    other_ring = new_keyring("Ed25519", at=datetime.now(UTC))
    other_did = did_from_url("http://127.0.0.1:9")

    def forged(verifier: str) -> list[str]:
        return [
            build_presentation(
                other_did, other_ring.active, fake.credentials, at=datetime.now(UTC), audience=verifier
            )
        ]

    fake.presentations = forged
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "presentation is signed by")


def test_refused_when_credential_issuer_is_untrusted(space: Dataspace, fake: FakeParticipant) -> None:
    now = datetime.now(UTC)
    self_issued = issue_credential(
        membership_credential(
            issuer=fake.did,
            subject_did=fake.did,
            roles=["dataHolder"],
            legal_name="Self",
            registration_number="1",
            country_code="FI",
            credential_id="urn:uuid:self",
            valid_from=now,
        ),
        fake.ring.active,
        fake.did,
    )
    fake.credentials = [self_issued]
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "not a trusted issuer")


def test_refused_when_credential_is_revoked(space: Dataspace, fake: FakeParticipant) -> None:
    assert _call(space, f"Bearer {fake.token_for(space['hospital'].did)}").status_code == 200
    authority = space["authority"]
    httpx.post(
        f"{authority.url}/api/v1/authority/revocations",
        headers=authority.admin(),
        json={"did": fake.did, "reason": "test: membership ended"},
    ).raise_for_status()
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "revoked")


def test_refused_when_credential_is_expired(space: Dataspace, fake: FakeParticipant) -> None:
    authority = space["authority"]
    ring = load_keyring(authority.node_dir / "keys")
    past = datetime.now(UTC) - timedelta(days=30)
    expired = issue_credential(
        membership_credential(
            issuer=authority.did,
            subject_did=fake.did,
            roles=["dataUser"],
            legal_name="Test Clinic",
            registration_number="T-1",
            country_code="FI",
            credential_id="urn:uuid:expired",
            valid_from=past,
            valid_until=past + timedelta(days=1),
        ),
        ring.active,
        authority.did,
    )
    fake.credentials = [expired]
    _refused(space, f"Bearer {fake.token_for(space['hospital'].did)}", "expired")


def test_refused_when_payload_is_tampered(space: Dataspace, fake: FakeParticipant) -> None:
    token = _tamper(fake.token_for(space["hospital"].did), 1, {"jti": "forged-jti"})
    _refused(space, f"Bearer {token}", "signature")


def test_refused_when_signature_is_tampered(space: Dataspace, fake: FakeParticipant) -> None:
    token = _tamper(fake.token_for(space["hospital"].did), 2)
    _refused(space, f"Bearer {token}", "signature")


def test_credential_service_refuses_query_without_our_access_token(
    space: Dataspace, fake: FakeParticipant
) -> None:
    # The fake tries to read the institute's credentials with a token the institute never minted.
    institute = space["institute"]
    resp = httpx.post(
        institute.url + "/dcp/presentations/query",
        headers={"Authorization": f"Bearer {fake.token_for(institute.did)}"},
        json={
            "@context": ["https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"],
            "type": "PresentationQueryMessage",
            "scope": ["org.eclipse.dspace.dcp.vc.type:MembershipCredential"],
        },
    )
    assert resp.status_code == 401
    assert "access token" in resp.json()["message"]


def test_audit_checkpoints_are_signed_and_verified(space: Dataspace) -> None:
    node = space["hospital"]
    report = httpx.post(f"{node.url}/api/v1/audit/verify", headers=node.admin()).json()
    assert report["ok"] is True


def test_cli_shows_identity_and_checks_a_peer(space: Dataspace) -> None:
    from tests.e2e.conftest import run_cli

    node = space["institute"]
    show = run_cli("trust", "show", str(node.node_dir))
    assert show.returncode == 0, show.stderr
    assert node.did in show.stdout
    assert "valid" in show.stdout
    check = run_cli("trust", "check", str(node.node_dir), "--peer", space["hospital"].url)
    assert check.returncode == 0, check.stderr
    assert "dataUser" in check.stdout
    bad = run_cli("trust", "revoke", str(node.node_dir), "--did", "did:web:x", "--reason", "r")
    assert bad.returncode == 5  # not an authority: one line, typed exit code
    assert "not a dataspace authority" in bad.stderr
