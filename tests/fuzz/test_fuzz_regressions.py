"""What the OpenAPI fuzzer found, pinned in-process on a real SQLite authority node: each was a 5xx or a
response the OpenAPI did not describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from d4h.errors import UserError
from d4h.hdab.routes import service_for
from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.trust.tokens import VerifiedCaller
from tests.apps import RunningApp


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[RunningApp]:
    settings = init_node(tmp_path / "hdab", name="HDAB", roles=[Role.AUTHORITY], port=8198)
    ctx: NodeContext = build_context(settings)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield RunningApp(client, ctx, token)


def test_an_invalid_application_form_is_refused_naming_the_field_and_nothing_is_written(
    authority: RunningApp,
) -> None:
    hdab = service_for(authority.ctx)
    caller = VerifiedCaller("did:web:institute.example", frozenset({"dataUser"}), {"legalName": "Institute"})
    head = authority.ctx.audit.entries(limit=10_000)[-1].seq
    with pytest.raises(UserError, match=r"invalid application form: .*title"):
        hdab.submit(caller, {})  # was a pydantic ValidationError: 500
    with pytest.raises(UserError, match=r"art54_declaration"):
        hdab.submit(caller, {"title": "t", "art54_declaration": "perhaps"})
    assert hdab.applications_of(caller.did) == []
    assert authority.ctx.audit.entries(limit=10_000)[-1].seq == head


@pytest.mark.parametrize("query", ["limit=0", "limit=5000", "offset=-1", "min_population=-3"])
def test_catalogue_search_bounds_are_checked_before_the_search(authority: RunningApp, query: str) -> None:
    resp = authority.client.get(f"/api/v1/hdab/catalogue?{query}", headers=authority.admin())
    assert resp.status_code == 422, resp.text  # was 500 (CatalogueQuery's own bounds)
    assert resp.json()["detail"][0]["loc"][:2] == ["query", query.split("=")[0]]


def test_an_unreadable_body_gets_the_typed_error_body(authority: RunningApp) -> None:
    resp = authority.client.post(
        "/api/v1/datasets",
        content=b"\x80\x81{",  # not UTF-8: FastAPI refuses it with 400, not 422
        headers={**authority.admin(), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json() == {"error": "bad_request", "message": "There was an error parsing the body"}
    missing = authority.client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_the_openapi_documents_error_statuses_and_non_json_media_types(authority: RunningApp) -> None:
    spec = authority.client.get("/openapi.json").json()
    paths = spec["paths"]
    datasets = paths["/api/v1/datasets"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "409"):
        schema = datasets[status]["content"]["application/json"]["schema"]
        assert schema["required"] == ["error", "message"]
    dsp = paths["/api/dsp/2025-1/negotiations/request"]["post"]["responses"]
    assert dsp["401"]["content"]["application/json"]["schema"]["title"] == "DspError"
    assert "201" in dsp
    # Error bodies are JSON even where the success is Turtle.
    turtle_404 = paths["/api/v1/hdab/catalogue.ttl"]["get"]["responses"]["404"]
    assert list(turtle_404["content"]) == ["application/json"]
    media = {
        "/api/v1/hdab/catalogue.ttl": "text/turtle",
        "/api/v1/hdab/catalogue.jsonld": "application/ld+json",
        "/api/v1/optout/list": "application/jose",
        "/status/{list_id}": "application/vc+jwt",
        "/catalog/healthdcat/{dataset_id}.ttl": "text/turtle",
    }
    for path, media_type in media.items():
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == [media_type], path
    turtle = authority.client.get("/api/v1/hdab/catalogue.ttl")
    assert turtle.headers["content-type"].startswith("text/turtle")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/audit/entries?after={n}", "/api/v1/datasets?offset={n}", "/api/v1/negotiations?offset={n}"],
)
def test_positions_beyond_sql_bigint_are_refused_and_the_largest_is_served(
    authority: RunningApp, path: str
) -> None:
    too_big = authority.client.get(path.format(n=2**63), headers=authority.admin())
    assert too_big.status_code == 422, too_big.text  # was 500: the number could not be bound in SQL
    largest = authority.client.get(path.format(n=2**63 - 1), headers=authority.admin())
    assert largest.status_code == 200, largest.text


def test_metadata_json_cannot_hold_is_refused_naming_it_and_nothing_is_stored(authority: RunningApp) -> None:
    body = {"id": "huge", "title": "Huge", "metadata": {"rows": 2**70}}
    resp = authority.client.post("/api/v1/datasets", json=body, headers=authority.admin())
    assert resp.status_code == 400, resp.text  # was 500: orjson cannot encode integers beyond 64 bits
    assert resp.json()["message"].startswith("dataset metadata cannot be stored")
    assert authority.client.get("/api/v1/datasets/huge", headers=authority.admin()).status_code == 404
