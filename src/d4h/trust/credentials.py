"""W3C VC Data Model 2.0 credentials secured as VC-JOSE JWTs: issue, verify, and the MembershipCredential.

The JWT payload is the credential JSON itself; the header carries ``alg``, ``kid`` (the issuer's DID URL)
and ``typ: vc+jwt``. Verification checks the signature with a key in the issuer's ``assertionMethod``,
issuer == DID of the kid, the trusted-issuer list, ``validFrom``/``validUntil``, and every status entry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from d4h.clock import Clock, utc_iso
from d4h.errors import D4HError, Unauthenticated, Unavailable, UserError
from d4h.trust.did import DidResolver
from d4h.trust.jose import peek, sign, verify_by_did
from d4h.trust.keys import KeyPair
from d4h.trust.status_list import VC_V2_CONTEXT, BitstringStatusList

Role = Literal["dataHolder", "dataUser", "hdab"]
ROLES: tuple[Role, ...] = get_args(Role)
VC_TYP = "vc+jwt"
MEMBERSHIP_TYPE = "MembershipCredential"
STATUS_LIST_TYPE = "BitstringStatusListCredential"
DEFAULT_LEEWAY = timedelta(seconds=30)

# Status list URL -> the status list credential as a VC-JWT (served and signed by the issuer).
StatusListFetch = Callable[[str], str]


@dataclass(frozen=True)
class VerifiedCredential:
    """A credential whose signature, issuer, validity window and status were all checked."""

    id: str | None
    issuer: str
    types: tuple[str, ...]
    subject_id: str | None
    subject: Mapping[str, Any]
    valid_from: datetime | None
    valid_until: datetime | None
    token: str = field(repr=False)
    payload: Mapping[str, Any] = field(repr=False, compare=False)


def issue_credential(credential: Mapping[str, Any], key: KeyPair, issuer_did: str) -> str:
    """Sign ``credential`` as a VC-JWT; its ``issuer`` must be ``issuer_did``."""
    if _issuer_of(credential) != issuer_did:
        raise UserError(f"credential issuer {_issuer_of(credential)!r} is not the signing DID {issuer_did}")
    if "VerifiableCredential" not in _types(credential):
        raise UserError("a credential must have type VerifiableCredential")
    return sign(credential, key, kid=f"{issuer_did}#{key.kid}", typ=VC_TYP)


def verify_credential(
    token: str,
    *,
    resolver: DidResolver,
    clock: Clock,
    trusted_issuers: Collection[str],
    fetch_status_list: StatusListFetch,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> VerifiedCredential:
    """Verify a VC-JWT; every failure is ``Unauthenticated`` naming the failed check."""
    compact = peek(token, what="credential")
    # Refuse untrusted issuers before resolving anything: a hostile credential must not make
    # this node fetch arbitrary URLs (SSRF through did:web).
    claimed = _issuer_of(compact.payload)
    if claimed not in trusted_issuers:
        raise Unauthenticated(
            f"credential {compact.payload.get('id', '(no id)')} comes from {claimed}, which is not a trusted issuer"
        )
    verified = verify_by_did(compact, resolver, relationship="assertionMethod", typ=VC_TYP, what="credential")
    credential = verified.payload
    issuer = _issuer_of(credential)
    label = f"credential {credential.get('id', '(no id)')}"
    if issuer != verified.signer:
        raise Unauthenticated(f"{label} names issuer {issuer!r} but is signed by {verified.signer}")
    if issuer not in trusted_issuers:
        raise Unauthenticated(f"{label} comes from {issuer}, which is not a trusted issuer")
    if "VerifiableCredential" not in _types(credential):
        raise Unauthenticated(f"{label} does not have type VerifiableCredential")
    now = clock.now()
    valid_from = _time(credential, "validFrom", label)
    valid_until = _time(credential, "validUntil", label)
    if valid_from is not None and now + leeway < valid_from:
        raise Unauthenticated(f"{label} is not valid yet (validFrom {utc_iso(valid_from)})")
    if valid_until is not None and now - leeway >= valid_until:
        raise Unauthenticated(f"{label} has expired (validUntil {utc_iso(valid_until)})")
    for entry in _as_list(credential.get("credentialStatus")):
        _check_status(
            entry, label, issuer, resolver=resolver, clock=clock, fetch=fetch_status_list, leeway=leeway
        )
    subject = _first_subject(credential, label)
    subject_id = subject.get("id")
    return VerifiedCredential(
        id=str(credential["id"]) if "id" in credential else None,
        issuer=issuer,
        types=_types(credential),
        subject_id=subject_id if isinstance(subject_id, str) else None,
        subject=subject,
        valid_from=valid_from,
        valid_until=valid_until,
        token=token,
        payload=credential,
    )


def membership_credential(
    *,
    issuer: str,
    subject_did: str,
    roles: Sequence[Role],
    legal_name: str,
    registration_number: str,
    country_code: str,
    credential_id: str,
    valid_from: datetime,
    valid_until: datetime | None = None,
    status: Mapping[str, str] | None = None,
    dataspace: str | None = None,
) -> dict[str, Any]:
    """A MembershipCredential: roles in the dataspace plus the member's Gaia-X LegalPerson attributes."""
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise UserError(
            f"membership roles must be a non-empty subset of {', '.join(ROLES)}; got {list(roles)}"
        )
    if not legal_name.strip() or not registration_number.strip():
        raise UserError("a membership credential needs a legal name and a registration number")
    if len(country_code) != 2 or not country_code.isalpha() or not country_code.isupper():
        raise UserError(f"legal address country must be an ISO 3166-1 alpha-2 code; got {country_code!r}")
    subject: dict[str, Any] = {
        "id": subject_did,
        "roles": sorted(set(roles)),
        "legalName": legal_name,
        "registrationNumber": registration_number,
        "legalAddressCountry": country_code,
    }
    if dataspace:
        subject["memberOf"] = dataspace
    credential: dict[str, Any] = {
        "@context": [VC_V2_CONTEXT],
        "id": credential_id,
        "type": ["VerifiableCredential", MEMBERSHIP_TYPE],
        "issuer": issuer,
        "validFrom": utc_iso(valid_from),
        "credentialSubject": subject,
    }
    if valid_until is not None:
        if valid_until <= valid_from:
            raise UserError("validUntil must be after validFrom")
        credential["validUntil"] = utc_iso(valid_until)
    if status is not None:
        credential["credentialStatus"] = dict(status)
    return credential


def _check_status(
    entry: Any,
    label: str,
    issuer: str,
    *,
    resolver: DidResolver,
    clock: Clock,
    fetch: StatusListFetch,
    leeway: timedelta,
) -> None:
    if not isinstance(entry, Mapping) or entry.get("type") != "BitstringStatusListEntry":
        # Fail closed: a status we cannot check might say "revoked".
        raise Unauthenticated(f"{label} has a credentialStatus this node cannot check")
    url = entry.get("statusListCredential")
    try:
        index = int(entry.get("statusListIndex", ""))
    except ValueError:
        index = -1
    if not isinstance(url, str) or index < 0:
        raise Unauthenticated(f"{label} has a malformed BitstringStatusListEntry")
    try:
        list_token = fetch(url)
    except D4HError:
        raise
    except Exception as exc:  # injected fetch: any transport failure
        raise Unavailable(f"cannot fetch status list {url} for {label}: {exc}") from exc
    # The list is itself a credential from the same issuer; it carries no status of its own.
    status_vc = verify_credential(
        list_token,
        resolver=resolver,
        clock=clock,
        trusted_issuers=(issuer,),
        fetch_status_list=_no_nested_status,
        leeway=leeway,
    )
    purpose = entry.get("statusPurpose", "revocation")
    if STATUS_LIST_TYPE not in status_vc.types or status_vc.subject.get("statusPurpose") != purpose:
        raise Unauthenticated(f"status list {url} is not a {purpose} BitstringStatusListCredential")
    if status_vc.id is not None and status_vc.id != url:
        raise Unauthenticated(f"status list fetched from {url} has id {status_vc.id}")
    try:
        bits = BitstringStatusList.decode(str(status_vc.subject.get("encodedList", "")))
        flagged = bits.get(index)
    except UserError as exc:
        raise Unauthenticated(f"status list {url} is unusable: {exc.message}") from exc
    if flagged:
        verb = "revoked" if purpose == "revocation" else "suspended"
        raise Unauthenticated(f"{label} is {verb} (status list {url}, index {index})")


def _no_nested_status(url: str) -> str:
    raise Unauthenticated(f"a status list credential may not itself carry a status ({url})")


def _issuer_of(credential: Mapping[str, Any]) -> str | None:
    issuer = credential.get("issuer")
    if isinstance(issuer, Mapping):
        issuer = issuer.get("id")
    return issuer if isinstance(issuer, str) else None


def _types(credential: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(t) for t in _as_list(credential.get("type")))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _first_subject(credential: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    subjects = _as_list(credential.get("credentialSubject"))
    if not subjects or not isinstance(subjects[0], Mapping):
        raise Unauthenticated(f"{label} has no credentialSubject")
    return dict(subjects[0])


def _time(credential: Mapping[str, Any], name: str, label: str) -> datetime | None:
    value = credential.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise Unauthenticated(f"{label} has an unreadable {name} {value!r}") from exc
    if parsed.tzinfo is None:
        raise Unauthenticated(f"{label} has {name} without a timezone")
    return parsed
