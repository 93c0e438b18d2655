"""The DSP version document served unauthenticated at ``/.well-known/dspace-version``.

The node speaks DSP 2025-1 over HTTPS under one versioned base path, identifies participants by ``did:web``
and authenticates connectors with DCP 1.0 (profile ``vc11-sl2021/jwt``).
"""

from __future__ import annotations

from d4h.dsp.messages import Auth, ProtocolVersion, VersionResponse
from d4h.errors import ConfigError, UserError

DSP_VERSION = "2025-1"
WELL_KNOWN_PATH = "/.well-known/dspace-version"
DEFAULT_BASE_PATH = f"/api/dsp/{DSP_VERSION}"
DCP_AUTH = Auth(protocol="DCP", version="1.0", profile=("vc11-sl2021/jwt",))
IDENTIFIER_TYPE = "did:web"


def version_response(path: str = DEFAULT_BASE_PATH, *, service_id: str | None = None) -> VersionResponse:
    """The VersionResponse advertising DSP 2025-1 at ``path`` (the versioned base, relative to the root)."""
    if not path.startswith("/"):
        raise ConfigError(f"DSP base path {path!r} must start with '/'")
    normalised = path.rstrip("/") or "/"
    entry = ProtocolVersion(
        version=DSP_VERSION,
        path=normalised,
        binding="HTTPS",
        identifierType=IDENTIFIER_TYPE,
        serviceId=service_id,
        auth=DCP_AUTH,
    )
    return VersionResponse(protocolVersions=(entry,))


def dsp_base_url(root_url: str, versions: VersionResponse) -> str:
    """The peer's DSP 2025-1 base URL: its root joined with the advertised path; ``UserError`` if absent."""
    for entry in versions.protocolVersions:
        if entry.version == DSP_VERSION and entry.binding == "HTTPS":
            return root_url.rstrip("/") + "/" + entry.path.strip("/")
    raise UserError(f"peer at {root_url} does not advertise DSP {DSP_VERSION} over HTTPS")
