"""A researcher's session with their own node: catalogue, permits, contracts, channels and federated analyses.

Everything goes through the node's management API with its admin token; the node itself speaks DSP/DCP to
holders and the HDAB. HTTP errors become the d4h error types with the server's message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, get_args
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from d4h.analytics.wire import FunctionName
from d4h.errors import (
    Conflict,
    D4HError,
    Forbidden,
    NotFound,
    PolicyDenied,
    Unauthenticated,
    Unavailable,
    UserError,
)
from d4h.sdk.results import Result, result_from_run

FUNCTIONS: tuple[str, ...] = get_args(FunctionName)  # the wire schema's list of vetted functions
ANALYSIS_FORMAT = "Analysis-PULL"
_NEGOTIATION_DONE = frozenset({"FINALIZED", "TERMINATED"})
_TRANSFER_SETTLED = frozenset({"STARTED", "SUSPENDED", "COMPLETED", "TERMINATED"})
_CATALOG_PAGE = 500

_BY_STATUS: dict[int, type[D4HError]] = {
    400: UserError,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: UserError,
}

Progress = Callable[[Result], None]


class AnalysisFailed(D4HError):
    """A run ended FAILED; ``result`` keeps the run (per-holder errors, disclosure refusals)."""

    code = "analysis_failed"

    def __init__(self, result: Result) -> None:
        failed = [f"{h.holder}: {h.error}" for h in result.holders if h.state == "FAILED" and h.error]
        detail = result.error or "; ".join(failed) or "no reason given"
        super().__init__(f"analysis {result.id} ({result.run.get('function')}) FAILED: {detail}")
        self.result = result


class ProcessTerminated(D4HError):
    """A negotiation or transfer ended TERMINATED where the session waited for success."""

    code = "process_terminated"


# ---------------------------------------------------------------------------------------------- pure helpers

_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|=|>|<)\s*(.+?)\s*$")


def _scalar(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, lists, true/null), the plain string otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_filter(text: str) -> dict[str, Any]:
    """``"age>=50"`` -> ``{"column": "age", "op": ">=", "value": 50}`` (``=`` means ``==``)."""
    match = _FILTER.match(text)
    if not match:
        raise UserError(
            f"cannot read the filter {text!r}", hint="write it as COLUMN OP VALUE, e.g. 'age>=50'"
        )
    column, op, value = match.groups()
    return {"column": column, "op": "==" if op == "=" else op, "value": _scalar(value)}


def parse_param(text: str) -> tuple[str, Any]:
    """``"time=os_time"`` -> ``("time", "os_time")``; ``"bins=[0,10,20]"`` -> ``("bins", [0, 10, 20])``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"cannot read the parameter {text!r}", hint="write it as KEY=VALUE")
    return key.strip(), _scalar(value.strip())


def analysis_request(
    function: str,
    transfers: Sequence[str],
    *,
    cohort: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    filters: Sequence[Mapping[str, Any] | str] | None = None,
    params: Mapping[str, Any] | None = None,
    secure: bool = False,
    dp: float | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The AnalysisRequest body, checked for what a client can know before asking the node."""
    if function not in FUNCTIONS:
        raise UserError(f"unknown analysis function {function!r}", hint="one of " + ", ".join(FUNCTIONS))
    if not transfers:
        raise UserError(
            "an analysis needs at least one transfer", hint="open one per holder with open_channel"
        )
    if len(set(transfers)) != len(transfers):
        raise UserError("each transfer may be named only once")
    dp_body: dict[str, Any] | None
    if dp is None:
        dp_body = None
    elif isinstance(dp, Mapping):
        dp_body = dict(dp)
    else:
        dp_body = {"epsilon": float(dp)}
    if dp_body is not None and not float(dp_body.get("epsilon", 0)) > 0:
        raise UserError("a differential-privacy epsilon must be positive")
    return {
        "function": function,
        "transfers": list(transfers),
        "cohort": dict(cohort) if cohort is not None else None,
        "variables": dict(variables or {}),
        "filters": [parse_filter(f) if isinstance(f, str) else dict(f) for f in filters or ()],
        "params": dict(params or {}),
        "secure": secure,
        "dp": dp_body,
    }


def base_url_of(provider: str) -> str:
    """A provider's base URL from its URL or its did:web (http only for loopback hosts)."""
    if not provider.startswith("did:web:"):
        return provider.rstrip("/")
    host, *path = provider[len("did:web:") :].split(":")
    host = host.replace("%3A", ":").replace("%3a", ":")
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    scheme = "http" if hostname in ("localhost", "127.0.0.1", "[::1]") else "https"
    return f"{scheme}://{host}" + "".join(f"/{p}" for p in path)


def _progress_key(run: Mapping[str, Any]) -> str:
    # What the researcher can see change: the run state and each holder's state and rounds.
    holders = [(h.get("holder"), h.get("state"), h.get("rounds")) for h in run.get("holders") or ()]
    return json.dumps([run.get("state"), holders], default=str)


# ---------------------------------------------------------------------------------------------- session


class Session:
    """A connection to the researcher's own node (management API, admin token)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        hdab: str | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        hint: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.hdab = hdab
        self.poll_interval = poll_interval
        self._hint = hint
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- HTTP ------------------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One management call; errors come back as d4h errors carrying the server's message."""
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"node at {self.url} does not answer: {exc}", hint=self._hint) from exc
        if resp.status_code >= 400:
            raise _error_for(resp, method, path, self.url)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise Unavailable(f"{method} {path} answered with a body that is not JSON") from exc

    def _wait_state(self, path: str, done: frozenset[str], *, what: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = min(0.05, self.poll_interval)
        while True:
            current: dict[str, Any] = self.call("GET", path)
            if current.get("state") in done:
                return current
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} is still {current.get('state')} after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll_interval)  # quick first polls, then gentle on the node

    def _hdab(self, hdab: str | None) -> str:
        chosen = hdab or self.hdab
        if not chosen:
            raise UserError("no HDAB given", hint="pass hdab=... or connect(..., hdab=URL)")
        return chosen

    def _as_applicant(self, hdab: str | None, method: str, path: str, body: Any = None) -> Any:
        # Our node signs the call with its DCP identity; the HDAB's status and body come back unchanged.
        return self.call(
            "POST",
            "/api/v1/hdab-client/call",
            {"hdab_url": self._hdab(hdab), "method": method, "path": path, "body": body},
        )

    # -- catalogue and permits -----------------------------------------------------------------------

    def catalogue(self, query: str = "", *, hdab: str | None = None, **facets: Any) -> dict[str, Any]:
        """Search the national catalogue at the HDAB (facets: health_category, theme, holder, coding_system,
        access_rights, min_population, max_population, covers_from, covers_to, offset, limit)."""
        params: list[tuple[str, str]] = [("q", query)]
        for name, value in facets.items():
            values = value if isinstance(value, list | tuple | set | frozenset) else [value]
            params += [(name, str(v)) for v in values if v is not None]
        path = "/api/v1/hdab/catalogue?" + urlencode(params)
        if not (hdab or self.hdab):
            # No HDAB named: this node is the HDAB (its admin may search its own catalogue).
            own: dict[str, Any] = self.call("GET", path)
            return own
        result: dict[str, Any] = self._as_applicant(hdab, "GET", path)
        return result

    def apply_for_permit(self, form: Mapping[str, Any], *, hdab: str | None = None) -> dict[str, Any]:
        """Submit a data access application (Art. 67 form) as this node's organisation."""
        result: dict[str, Any] = self._as_applicant(hdab, "POST", "/api/v1/hdab/applications", dict(form))
        return result

    def application(self, application_id: str, *, hdab: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._as_applicant(
            hdab, "GET", f"/api/v1/hdab/applications/{application_id}"
        )
        return result

    def applications(self, *, hdab: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._as_applicant(hdab, "GET", "/api/v1/hdab/applications")
        return result

    def fetch_permit(self, permit_id: str, *, hdab: str | None = None) -> dict[str, Any]:
        """Fetch a granted permit credential from the HDAB into the node's credential store."""
        result: dict[str, Any] = self.call(
            "POST", "/api/v1/permits/fetch", {"hdab_url": self._hdab(hdab), "permit_id": permit_id}
        )
        return result

    # -- contracts and channels ----------------------------------------------------------------------

    def catalog(self, provider: str) -> Iterator[dict[str, Any]]:
        """The datasets a provider's DSP catalog shows to this node, across pages."""
        base = base_url_of(provider)
        offset: int | None = 0
        while offset is not None:
            page = self.call(
                "POST",
                "/api/v1/catalog/request",
                {"provider_url": base, "offset": offset, "limit": _CATALOG_PAGE},
            )
            yield from page["catalog"].get("dataset", []) or []
            values = parse_qs(urlsplit(page.get("next") or "").query).get("offset")
            following = int(values[0]) if values else None
            offset = following if following is not None and following > offset else None

    def negotiate(
        self,
        provider: str,
        dataset: str,
        *,
        offer: str | Mapping[str, Any] | None = None,
        timeout: float = 120.0,
    ) -> str:
        """Negotiate a contract for a dataset (provider as URL or did:web); returns the agreement id.

        ``offer``: the offer itself, its id, or None for the dataset's only offer in the provider's catalog.
        """
        base = base_url_of(provider)
        if isinstance(offer, Mapping):
            chosen = dict(offer)
        else:
            found = next((ds for ds in self.catalog(base) if ds.get("@id") == dataset), None)
            if found is None:
                raise NotFound(f"dataset {dataset} is not in the catalog {base} shows to this node")
            chosen = _pick_offer(found, offer or "")
        n = self.call(
            "POST", "/api/v1/negotiations", {"provider_url": base, "offer": chosen, "dataset_id": dataset}
        )
        final = self._wait_state(
            f"/api/v1/negotiations/{n['id']}",
            _NEGOTIATION_DONE,
            what=f"negotiation {n['id']}",
            timeout=timeout,
        )
        if final["state"] != "FINALIZED" or not final.get("agreement_id"):
            reason = final.get("error_detail") or "no reason given"
            raise ProcessTerminated(f"negotiation {n['id']} {final['state']}: {reason}")
        return str(final["agreement_id"])

    def open_channel(self, agreement_id: str, *, timeout: float = 60.0) -> str:
        """Start an Analysis-PULL transfer under an agreement and wait until it is STARTED; its id."""
        t = self.call("POST", "/api/v1/transfers", {"agreement_id": agreement_id, "format": ANALYSIS_FORMAT})
        final = self._wait_state(
            f"/api/v1/transfers/{t['id']}", _TRANSFER_SETTLED, what=f"transfer {t['id']}", timeout=timeout
        )
        if final["state"] != "STARTED":
            reason = final.get("error_detail") or "no reason given"
            raise ProcessTerminated(f"transfer {t['id']} is {final['state']}, not STARTED: {reason}")
        return str(final["id"])

    # -- analyses ---------------------------------------------------------------------------------------

    def analyze(
        self,
        function: str,
        transfers: Sequence[str],
        *,
        cohort: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        filters: Sequence[Mapping[str, Any] | str] | None = None,
        params: Mapping[str, Any] | None = None,
        secure: bool = False,
        dp: float | Mapping[str, Any] | None = None,
        wait: bool = True,
        progress: Progress | None = None,
        timeout: float = 600.0,
    ) -> Result:
        """Run a vetted function over the holders behind ``transfers``; with ``wait``, the finished result.

        ``progress`` is called with the run each time its state or a holder's state or round changes.
        A FAILED run raises ``AnalysisFailed`` (its ``result`` keeps per-holder errors and refusals).
        """
        body = analysis_request(
            function,
            transfers,
            cohort=cohort,
            variables=variables,
            filters=filters,
            params=params,
            secure=secure,
            dp=dp,
        )
        # Without a progress display, let the node hold the request until the run ends (no polling delay).
        long_poll = "?wait=30" if wait and progress is None else ""
        run: dict[str, Any] = self.call("POST", "/api/v1/analyses" + long_poll, body)
        if not wait:
            result = result_from_run(run)
            if progress is not None:
                progress(result)
            return result
        return self.wait(str(run["id"]), progress=progress, timeout=timeout, first=run)

    def wait(
        self,
        run_id: str,
        *,
        progress: Progress | None = None,
        timeout: float = 600.0,
        first: Mapping[str, Any] | None = None,
    ) -> Result:
        """Poll a run until COMPLETED (its Result) or FAILED (``AnalysisFailed``); Unavailable after ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = min(0.05, self.poll_interval)
        last = ""
        run: Mapping[str, Any] = (
            first if first is not None else self.call("GET", f"/api/v1/analyses/{run_id}")
        )
        while True:
            result = result_from_run(run)
            key = _progress_key(run)
            if progress is not None and key != last:
                progress(result)
            last = key
            if result.state == "FAILED":
                raise AnalysisFailed(result)
            if result.done:
                return result
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"analysis {run_id} is still {result.state} after {timeout:g} s",
                    hint=f"follow it later with session.run({run_id!r}) or 'd4h analyze show {run_id}'",
                )
            if progress is None:
                wait_s = max(1, min(30, int(deadline - time.monotonic())))
                run = self.call("GET", f"/api/v1/analyses/{run_id}?wait={wait_s}")
                continue
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll_interval)
            run = self.call("GET", f"/api/v1/analyses/{run_id}")

    def run(self, run_id: str) -> Result:
        """One analysis run as it is now (any state)."""
        return result_from_run(self.call("GET", f"/api/v1/analyses/{run_id}"))

    def runs(self) -> list[Result]:
        """This node's analysis runs, newest first."""
        return [result_from_run(r) for r in self.call("GET", "/api/v1/analyses")]


def _pick_offer(dataset: Mapping[str, Any], offer_id: str) -> dict[str, Any]:
    offers: list[dict[str, Any]] = list(dataset.get("hasPolicy", []) or [])
    if offer_id:
        for candidate in offers:
            if candidate.get("@id") == offer_id:
                return candidate
        raise NotFound(f"offer {offer_id} is not offered for dataset {dataset.get('@id')}")
    if len(offers) != 1:
        known = ", ".join(str(o.get("@id")) for o in offers) or "none"
        raise UserError(f"dataset {dataset.get('@id')} has {len(offers)} offers ({known})", hint="choose one")
    return offers[0]


def _error_for(resp: httpx.Response, method: str, path: str, url: str) -> D4HError:
    try:
        detail = resp.json()
    except ValueError:
        detail = None
    if isinstance(detail, dict):
        message = detail.get("message") or json.dumps(detail.get("detail", detail))[:300]
        code = detail.get("error")
        hint = detail.get("hint")
    else:
        message, code, hint = resp.text[:300] or f"HTTP {resp.status_code}", None, None
    if resp.status_code == 404 and message in ('"Not Found"', "Not Found"):
        message = f"{method} {path} is not served by the node at {url} (check its roles)"
    if code == "policy_denied" or (
        resp.status_code == 403 and isinstance(detail, dict) and "reasons" in detail
    ):
        reasons = detail.get("reasons") if isinstance(detail, dict) else None
        return PolicyDenied(str(message), [str(r) for r in reasons or ()])
    error = _BY_STATUS.get(resp.status_code, Unavailable)(str(message), hint=hint)
    return error


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    node_dir: Path | None = None,
    hdab: str | None = None,
    timeout: float = 60.0,
    poll_interval: float = 0.5,
) -> Session:
    """Connect to your own node: by URL and admin token, or from its node directory (token and URL read there)."""
    hint: str | None = None
    if node_dir is not None:
        from d4h.node.app import read_admin_token  # the node stack is only needed for node directories
        from d4h.node.settings import load_settings

        settings = load_settings(node_dir)
        if token is None:
            token = read_admin_token(settings)
        if url is None:
            endpoint = settings.run_dir / "endpoint.json"
            url = json.loads(endpoint.read_text())["url"] if endpoint.exists() else settings.base_url
        hint = f"start it with 'd4h node serve {node_dir}'"
    if not url:
        raise UserError("connect needs the node's URL or its node directory")
    if not token:
        raise Unauthenticated(f"no admin token for {url}", hint="pass token=... or node_dir=...")
    return Session(url, token, hdab=hdab, timeout=timeout, poll_interval=poll_interval, hint=hint)
