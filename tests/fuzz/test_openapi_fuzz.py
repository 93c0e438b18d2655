"""Schemathesis against every node's generated OpenAPI, on real node processes (issue #10 item 1).

Every operation of the authority (HDAB), a hospital and an institute gets generated requests, valid and
invalid: management routes with the node's admin token, DSP/DCP routes with a fresh DCP token from an
onboarded participant, and everything once more without credentials. No response may be a 5xx or break
the operation's documented status codes, media types and response schema; without credentials, protected
operations are refused. The web UI's forms (not in the OpenAPI) are fuzzed signed in (session + CSRF) and
anonymously: never a 5xx, and signed-in screens send strangers to the login page.

Budget: a few examples per operation in `make test`; D4H_SOAK=1 (`make soak`) runs ~100 per operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.errors import InvalidSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from d4h.web.security import CSRF_FIELD, LOGIN_CSRF_COOKIE, SESSION_COOKIE
from tests.e2e.dataspace import Dataspace, FakeParticipant, Node
from tests.fuzz.conftest import MAX_EXAMPLES, SOAK, UiSession

if TYPE_CHECKING:
    Op = APIOperation[Any, Any, Any, Any]
    AnyCase = Case[Any]

# A soak run takes minutes per node: past the suite's 300 s per-test timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600 if SOAK else 300)]

NODES = ("authority", "hospital", "institute")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
Headers = Callable[[], dict[str, str]]


def _operations(node: Node) -> list[Op]:
    schema = schemathesis.openapi.from_url(node.url + "/openapi.json", timeout=30)
    ops = [_ok(result) for result in schema.get_all_operations()]
    assert len(ops) > 40, f"{node.key} documents only {len(ops)} operations"
    return ops


def _ok(result: Ok[Op] | Err[InvalidSchema]) -> Op:
    """An operation schemathesis cannot even read is a broken OpenAPI document: fail on it."""
    assert isinstance(result, Ok), f"invalid operation in the OpenAPI: {result.err()}"
    return result.ok()


def _budget(examples: int) -> Any:
    """Hypothesis settings of one operation's run: ``examples`` cases, replayed in `make test`."""
    return settings(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        derandomize=not SOAK,  # `make test` replays the same examples; the soak explores
        suppress_health_check=list(HealthCheck),
    )


def _admin_only(op: Op) -> bool:
    """Operations that declare the admin bearer scheme (AdminDep) in the OpenAPI."""
    return bool(op.definition.raw.get("security"))


def _strategy(op: Op) -> st.SearchStrategy[AnyCase]:
    return st.one_of([op.as_strategy(generation_mode=mode) for mode in GenerationMode])


def _fuzz(
    op: Op,
    headers: Headers,
    expect: Callable[[Op, int], str | None],
    examples: int = MAX_EXAMPLES,
    seen: list[tuple[Op, int]] | None = None,
) -> str | None:
    """Run the operation's budget; the first failure, described, or None."""

    @_budget(examples)
    @given(case=_strategy(op))
    def run(case: AnyCase) -> None:
        sent = headers()
        if not sent and case.headers:  # anonymous: whatever the generator put in Authorization goes too
            case.headers.pop("Authorization", None)
        response = case.call(headers=sent, timeout=60)
        if seen is not None:
            seen.append((op, response.status_code))
        case.validate_response(response, checks=CHECKS, headers=sent)
        problem = expect(op, response.status_code)
        assert problem is None, f"{problem}\n{case.as_curl_command()}\n{response.text[:500]}"

    try:
        run()
    except (AssertionError, Exception, BaseExceptionGroup) as exc:
        return f"{op.method.upper()} {op.path}: {exc}"
    return None


def _report(node: Node, problems: list[str | None]) -> None:
    found = [p for p in problems if p]
    assert not found, f"{len(found)} operations of {node.key} failed:\n\n" + "\n\n".join(found)


def _any_status(op: Op, status: int) -> str | None:
    return None


def _refused_without_credentials(op: Op, status: int) -> str | None:
    # FastAPI parses the body before it runs dependencies, so an unreadable or invalid body may be
    # refused (400/422) before the missing credential is (401); nothing else may come back.
    if _admin_only(op) and status not in (400, 401, 422):
        return f"admin operation answered {status} without the admin token"
    # The DSP binding answers an unknown endpoint (a transfer verb) 404 before it authenticates.
    if op.path.startswith("/api/dsp/") and status not in (400, 401, 404, 422):
        return f"DSP operation answered {status} without a DCP token"
    return None


@pytest.mark.parametrize("key", NODES)
def test_every_operation_with_credentials(seeded: Dataspace, member: FakeParticipant, key: str) -> None:
    node = seeded[key]

    def credentials_for(op: Op) -> Headers:
        if _admin_only(op):
            return node.admin
        # Everything else may be a participant call: a fresh token each time (jti replay is refused).
        return lambda: {"Authorization": f"Bearer {member.token_for(node.did)}"}

    seen: list[tuple[Op, int]] = []
    _report(node, [_fuzz(op, credentials_for(op), _any_status, seen=seen) for op in _operations(node)])
    # The credentials were accepted, so the inputs reached the handlers rather than the 401 in front.
    admin = [status for op, status in seen if _admin_only(op)]
    dsp = [status for op, status in seen if op.path.startswith("/api/dsp/")]
    assert sum(1 for status in admin if status < 300) >= 5, admin
    assert sum(1 for status in dsp if status != 401) >= len(dsp) // 2, dsp


@pytest.mark.parametrize("key", NODES)
def test_every_operation_without_credentials(seeded: Dataspace, key: str) -> None:
    node = seeded[key]
    # Half the budget: what matters here is the refusal, which does not depend on the input.
    examples = max(2, MAX_EXAMPLES // 2)
    _report(node, [_fuzz(op, dict, _refused_without_credentials, examples) for op in _operations(node)])


# -- the web UI (server-rendered forms; their routes are not in the nodes' OpenAPI) ----------------------

UI_SCREENS = {
    "authority": ("/ui/reviewer", "/ui/citizen"),
    "hospital": ("/ui/steward",),
    "institute": ("/ui/researcher",),
}


def _ui_operations(spec: dict[str, Any], node: Node) -> list[Op]:
    schema = schemathesis.openapi.from_dict(spec)
    mine = UI_SCREENS[node.key]
    ops = []
    for result in schema.get_all_operations():
        op = _ok(result)
        if op.path == "/ui/logout":
            continue  # would end the session the other cases run in
        if op.path.startswith(mine) or op.path in ("/ui/login", "/ui/") or op.path.startswith("/ui/static"):
            ops.append(op)
    assert len(ops) >= 5, f"only {len(ops)} web UI operations for {node.key}"
    return ops


def _fuzz_ui(op: Op, node: Node, session: UiSession | None, seen: list[tuple[int, str]]) -> str | None:
    @_budget(MAX_EXAMPLES if session else max(2, MAX_EXAMPLES // 2))
    @given(case=_strategy(op))
    def run(case: AnyCase) -> None:
        cookies = {}
        if session is not None:
            # The pre-session double-submit cookie is set to the session's token, so one form value passes
            # the check of public and signed-in forms alike.
            cookies = {SESSION_COOKIE: session.cookie, LOGIN_CSRF_COOKIE: session.csrf}
            if isinstance(case.body, dict):
                case.body[CSRF_FIELD] = session.csrf
        response = case.call(base_url=node.url, cookies=cookies, timeout=60, allow_redirects=False)
        seen.append((response.status_code, (response.headers.get("location") or [""])[0]))
        case.validate_response(response, checks=[not_a_server_error])
        signed_in_only = not op.path.startswith(("/ui/login", "/ui/static", "/ui/citizen"))
        if session is None and signed_in_only and response.status_code != 404:
            # (404: a generated path that matches no route at all, e.g. an empty id segment)
            assert response.status_code == 303, f"{response.status_code} without a session"
            assert response.headers.get("location") == ["/ui/login"]

    try:
        run()
    except (AssertionError, Exception, BaseExceptionGroup) as exc:
        return f"{op.method.upper()} {op.path}: {exc}"
    return None


@pytest.mark.parametrize("key", NODES)
def test_every_web_form_signed_in_and_anonymous(
    seeded: Dataspace, ui_sessions: dict[str, UiSession], ui_openapi: dict[str, Any], key: str
) -> None:
    node = seeded[key]
    ops = _ui_operations(ui_openapi, node)
    signed_in: list[tuple[int, str]] = []
    problems = [_fuzz_ui(op, node, ui_sessions[key], signed_in) for op in ops]
    problems += [_fuzz_ui(op, node, None, []) for op in ops]
    _report(node, problems)
    # The session held throughout (nothing sent back to the login page) and screens did render.
    assert not [s for s in signed_in if s[1] == "/ui/login"], signed_in
    assert sum(1 for status, _ in signed_in if status == 200) >= 5, signed_in


def test_a_dataset_missing_from_the_catalogue_is_a_404_page_not_a_bad_gateway(
    seeded: Dataspace, ui_sessions: dict[str, UiSession]
) -> None:
    """Found by the form fuzzer: the researcher's dataset page answered 502 for a dataset the HDAB does not
    list, as if the HDAB had failed."""
    node, session = seeded["institute"], ui_sessions["institute"]
    resp = httpx.get(
        f"{node.url}/ui/researcher/dataset",
        params={"holder": seeded["hospital"].did, "id": "no-such-dataset"},
        cookies={SESSION_COOKIE: session.cookie},
        timeout=30,
    )
    assert resp.status_code == 404, resp.text[:300]
    assert "no-such-dataset" in resp.text
