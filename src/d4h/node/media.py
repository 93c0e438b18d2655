"""Response classes for bodies that are not JSON, so the OpenAPI documents the media type a route sends."""

from __future__ import annotations

from fastapi import Response


class TurtleResponse(Response):
    media_type = "text/turtle"


class JsonLdResponse(Response):
    media_type = "application/ld+json"


# For routes with JsonLdResponse: the body is a JSON-LD document (FastAPI would say "a string").
JSONLD_DOCUMENT: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}}
}


class JoseResponse(Response):
    media_type = "application/jose"


class VcJwtResponse(Response):
    media_type = "application/vc+jwt"
