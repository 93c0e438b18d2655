"""A management-API client for CLI commands that act through a running node (admin token from its directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from d4h.errors import Conflict, D4HError, Forbidden, NotFound, Unauthenticated, Unavailable, UserError
from d4h.node.app import read_admin_token
from d4h.node.settings import load_settings

_BY_STATUS: dict[int, type[D4HError]] = {
    400: UserError,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: UserError,
}


class NodeClient:
    def __init__(self, node_dir: Path, timeout: float = 60.0) -> None:
        settings = load_settings(node_dir)
        endpoint = settings.run_dir / "endpoint.json"
        self.url = json.loads(endpoint.read_text())["url"] if endpoint.exists() else settings.base_url
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {read_admin_token(settings)}"},
        )
        self._node_dir = node_dir

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"node at {self.url} does not answer: {exc}",
                hint=f"start it with 'd4h node serve {self._node_dir}'",
            ) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json()
                message = detail.get("message") or json.dumps(detail.get("detail", detail))[:300]
            except ValueError:
                message = resp.text[:300]
            if resp.status_code == 404 and message in ('"Not Found"', "Not Found"):
                message = f"{method} {path} is not served by the node at {self.url} (check its roles)"
            raise _BY_STATUS.get(resp.status_code, Unavailable)(message)
        if not resp.content:
            return None
        return resp.json()

    def close(self) -> None:
        self._http.close()
