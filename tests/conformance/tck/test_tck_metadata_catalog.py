"""TCK MET and CAT scenarios: the version endpoint and the catalog of the connector under test."""

from __future__ import annotations

import httpx

from tests.conformance.tck.conftest import Tck

CAT_DATASET = "CAT0101"


def test_MET_01_01(tck: Tck) -> None:
    """The unauthenticated version endpoint lists 2025-1 with its path and the HTTPS binding."""
    resp = httpx.get(tck.node.url + "/.well-known/dspace-version")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert not tck.validate(body, "common/protocol-version-schema.json")
    entry = next(v for v in body["protocolVersions"] if v["version"] == "2025-1")
    assert entry["binding"] == "HTTPS"
    assert entry["path"].endswith("2025-1")
    # The advertised path is where the DSP endpoints really are.
    assert (
        tck.post("/catalog/request", _catalog_request(), base=tck.node.url + entry["path"]).status_code == 200
    )


def _catalog_request() -> dict[str, object]:
    return {"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage"}


def test_CAT_01_01(tck: Tck) -> None:
    """POST catalog/request returns a schema-valid Catalog holding the seeded dataset with its offer."""
    resp = tck.post("/catalog/request", _catalog_request())
    catalog = tck.expect_ok(resp, 200, "Catalog")
    ids = [d["@id"] for d in catalog.get("dataset", [])]
    assert CAT_DATASET in ids
    dataset = next(d for d in catalog["dataset"] if d["@id"] == CAT_DATASET)
    assert dataset["hasPolicy"], "a catalog dataset needs at least one offer"
    assert all("target" not in offer for offer in dataset["hasPolicy"])
    assert catalog["participantId"]


def test_CAT_01_02(tck: Tck) -> None:
    """GET catalog/datasets/{id} returns that Dataset, schema-valid, with offers and distributions."""
    resp = tck.get(f"/catalog/datasets/{CAT_DATASET}")
    dataset = tck.expect_ok(resp, 200, "Dataset")
    assert dataset["@id"] == CAT_DATASET
    assert dataset["hasPolicy"][0]["@id"]
    assert dataset["distribution"]


def test_CAT_01_03(tck: Tck) -> None:
    """An unknown dataset answers 404 with a schema-valid CatalogError body."""
    resp = tck.get("/catalog/datasets/CAT-NO-SUCH-DATASET")
    error = tck.expect_error(resp, "CatalogError", status=404)
    assert error["reason"]
