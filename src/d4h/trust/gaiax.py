"""Gaia-X 25.11 LegalPerson: the credential subject (JSON-LD in gx terms) and the credential around it.

The subject uses compact IRIs with the ``gx:`` prefix of the Gaia-X context, so it expands the same way
under the published context and validates against the Gaia-X SHACL shapes (``gx:LegalPersonShape`` is
closed: only registration number, addresses, name, description and organisation links are allowed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from d4h.clock import utc_iso
from d4h.errors import UserError
from d4h.trust.status_list import VC_V2_CONTEXT

GX_CONTEXT = "https://w3id.org/gaia-x/development#"
GX_NAMESPACE = "https://w3id.org/gaia-x/development#"
# schema.org is not a prefix of the Gaia-X context (it calls it "httpsschema"), so declare it inline.
SCHEMA_PREFIX_CONTEXT: Mapping[str, str] = {"schema": "https://schema.org/"}
LEGAL_PERSON_CONTEXT: tuple[str | Mapping[str, str], ...] = (VC_V2_CONTEXT, GX_CONTEXT, SCHEMA_PREFIX_CONTEXT)

RegistrationKind = Literal["vatID", "local", "euid", "eori", "leiCode", "taxID"]
# kind -> (node class, property holding the number), as in the gx:*Shape node shapes.
_REGISTRATION: Mapping[str, tuple[str, str]] = {
    "vatID": ("gx:VatID", "gx:vatID"),
    "local": ("gx:LocalRegistrationNumber", "gx:local"),
    "euid": ("gx:EUID", "gx:euid"),
    "eori": ("gx:EORI", "gx:eori"),
    "leiCode": ("gx:LeiCode", "schema:leiCode"),
    "taxID": ("gx:TaxID", "schema:taxID"),
}
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_NUTS2 = re.compile(r"^[A-Z]{2}[0-9A-Z]{2}$")


def address(
    country_code: str,
    *,
    region: str | None = None,
    locality: str | None = None,
    street_address: str | None = None,
    postal_code: str | None = None,
) -> dict[str, Any]:
    """A ``gx:Address``: ISO 3166-1 alpha-2 country, optional NUTS2 region and vCard postal fields."""
    if not _COUNTRY.match(country_code):
        raise UserError(f"country code must be ISO 3166-1 alpha-2 (e.g. 'DE'); got {country_code!r}")
    if region is not None and not _NUTS2.match(region):
        raise UserError(f"region must be a NUTS2 code (e.g. 'DE30'); got {region!r}")
    node: dict[str, Any] = {"type": "gx:Address", "gx:countryCode": country_code}
    optional = {
        "vcard:region": region,
        "vcard:locality": locality,
        "vcard:street-address": street_address,
        "vcard:postal-code": postal_code,
    }
    node.update({k: v for k, v in optional.items() if v})
    return node


def legal_person_subject(
    did: str,
    *,
    legal_name: str,
    registration_number: str,
    legal_address: Mapping[str, Any],
    headquarters_address: Mapping[str, Any] | None = None,
    registration_kind: RegistrationKind = "vatID",
    description: str | None = None,
) -> dict[str, Any]:
    """The ``credentialSubject`` of a Gaia-X LegalPerson credential (headquarters default to the legal
    address)."""
    if not legal_name.strip():
        raise UserError("a legal person needs a legal name")
    if not registration_number.strip():
        raise UserError("a legal person needs a registration number")
    if registration_kind not in _REGISTRATION:
        raise UserError(
            f"unknown registration kind {registration_kind!r}; use one of {', '.join(_REGISTRATION)}"
        )
    node_class, number_property = _REGISTRATION[registration_kind]
    registration: dict[str, Any] = {
        "type": ["gx:RegistrationNumber", node_class],
        number_property: registration_number,
    }
    if registration_kind in ("vatID", "leiCode"):
        registration["gx:countryCode"] = legal_address["gx:countryCode"]
    subject: dict[str, Any] = {
        "id": did,
        "type": "gx:LegalPerson",
        "schema:name": legal_name,
        "gx:registrationNumber": registration,
        "gx:legalAddress": dict(legal_address),
        "gx:headquartersAddress": dict(headquarters_address or legal_address),
    }
    if description:
        subject["schema:description"] = description
    return subject


def legal_person_credential(
    *,
    issuer: str,
    subject: Mapping[str, Any],
    credential_id: str,
    valid_from: datetime,
    valid_until: datetime | None = None,
    status: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A VC DM 2.0 credential around a LegalPerson subject, ready for ``issue_credential``."""
    credential: dict[str, Any] = {
        "@context": [c if isinstance(c, str) else dict(c) for c in LEGAL_PERSON_CONTEXT],
        "id": credential_id,
        "type": ["VerifiableCredential", "gx:LegalPerson"],
        "issuer": issuer,
        "validFrom": utc_iso(valid_from),
        "credentialSubject": dict(subject),
    }
    if valid_until is not None:
        credential["validUntil"] = utc_iso(valid_until)
    if status is not None:
        credential["credentialStatus"] = dict(status)
    return credential
