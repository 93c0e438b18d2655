"""Gaia-X LegalPerson builders: field mapping and input checks (SHACL conformance is in tests/conformance)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from d4h.errors import UserError
from d4h.trust.gaiax import GX_CONTEXT, address, legal_person_credential, legal_person_subject


def test_legal_person_subject_defaults_headquarters_to_legal_address_when_not_given() -> None:
    subject = legal_person_subject(
        "did:web:h.example",
        legal_name="H",
        registration_number="DE1",
        legal_address=address("DE", region="DE30"),
    )
    assert subject["type"] == "gx:LegalPerson"
    assert subject["gx:headquartersAddress"] == subject["gx:legalAddress"]
    assert subject["gx:legalAddress"] == {
        "type": "gx:Address",
        "gx:countryCode": "DE",
        "vcard:region": "DE30",
    }
    assert subject["gx:registrationNumber"] == {
        "type": ["gx:RegistrationNumber", "gx:VatID"],
        "gx:vatID": "DE1",
        "gx:countryCode": "DE",
    }


def test_legal_person_subject_uses_the_kind_specific_property_when_kind_is_local() -> None:
    subject = legal_person_subject(
        "did:web:h.example",
        legal_name="H",
        registration_number="HRB 1",
        registration_kind="local",
        legal_address=address("FR"),
    )
    assert subject["gx:registrationNumber"] == {
        "type": ["gx:RegistrationNumber", "gx:LocalRegistrationNumber"],
        "gx:local": "HRB 1",
    }


@pytest.mark.parametrize(("country", "region"), [("de", None), ("DEU", None), ("DE", "Berlin")])
def test_address_refuses_when_country_or_region_code_is_malformed(country: str, region: str | None) -> None:
    with pytest.raises(UserError):
        address(country, region=region)


def test_legal_person_subject_refuses_when_name_or_number_is_blank() -> None:
    with pytest.raises(UserError, match="legal name"):
        legal_person_subject(
            "did:web:h.example", legal_name=" ", registration_number="1", legal_address=address("DE")
        )
    with pytest.raises(UserError, match="registration number"):
        legal_person_subject(
            "did:web:h.example", legal_name="H", registration_number="", legal_address=address("DE")
        )


def test_legal_person_credential_wraps_subject_in_vc_v2_with_gaiax_context() -> None:
    subject = legal_person_subject(
        "did:web:h.example", legal_name="H", registration_number="1", legal_address=address("DE")
    )
    vc = legal_person_credential(
        issuer="did:web:a.example",
        subject=subject,
        credential_id="urn:uuid:1",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        valid_until=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert vc["@context"][:2] == ["https://www.w3.org/ns/credentials/v2", GX_CONTEXT]
    assert vc["type"] == ["VerifiableCredential", "gx:LegalPerson"]
    assert vc["credentialSubject"] == subject
    assert vc["validUntil"].startswith("2027-01-01T00:00:00")
