"""Tumour-board functions between real nodes: three hospitals with synthetic oncology populations (built by
build_population, demo vocabulary) serve the ``oncology_lines`` extract; the institute's node coordinates.
A secure tumour-board query equals the pure core on the pooled extracts; a too-narrow one is suppressed with
the rule named; the toxicity model is fitted pooled-exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.population import build_population
from d4h.node.settings import Role
from d4h.oncology import similar_patients as sp
from d4h.oncology.extract import oncology_lines
from d4h.oncology.functions import OMOP_FEATURES, query_of, toxicity_design
from tests.e2e.dataspace import Node, admin_call, start_dataspace
from tests.e2e.test_analytics_between_nodes import USERS_ONLY, _open_channel

HOLDERS = {"h0": "site-a", "h1": "site-b", "h2": "site-c"}
BOARD = {"tumour_type": "breast", "stages": ["I", "II", "III"], "line": 1}


def _publish(holder: Node) -> None:
    admin_call(holder, "POST", "/api/v1/datasets",
           {"id": "lines", "title": f"oncology lines (site {holder.key})",
            "metadata": {"source": {"extract": "oncology_lines"}}})  # fmt: skip
    admin_call(holder, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
    admin_call(holder, "POST", "/api/v1/contractdefinitions",
           {"id": "research", "access_policy_id": "users", "contract_policy_id": "users",
            "dataset_ids": ["lines"]})  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir: Path = tmp_path_factory.mktemp("oncology-space")
    participants = (*((h, Role.HOLDER) for h in HOLDERS), ("institute", Role.USER))
    for space in start_dataspace(workdir, participants=participants):
        channels: dict[str, str] = {}
        extracts = {}
        for key, site in HOLDERS.items():
            holder = space[key]
            population = build_population(holder.node_dir / "holder", site, patients=500, seed=11)
            with AnalyticsDB.open(str(population.database)) as db:
                extracts[key] = oncology_lines(db)
            _publish(holder)
            channels[key] = _open_channel(space["institute"], holder, "lines")
        yield {"space": space, "channels": channels, "extracts": extracts}


def _analyze(env: dict[str, Any], expect: str = "COMPLETED", **request: Any) -> dict[str, Any]:
    body = {"transfers": list(env["channels"].values()), **request}
    run = admin_call(env["space"]["institute"], "POST", "/api/v1/analyses?wait=120", body)
    assert run["state"] == expect, (run["error"], run["holders"])
    return dict(run)


def test_secure_tumour_board_query_equals_pooled_core_between_real_nodes(env: dict[str, Any]) -> None:
    run = _analyze(env, function="similar_patients", params=BOARD, secure=True)
    result = run["result"]
    query = query_of(BOARD)
    parts = [sp.similar_local(sp_frame, query) for sp_frame in env["extracts"].values()]
    pooled = sp.combine(query, parts)
    assert result["mode"] == "pooled" and run["provenance"]["secure_aggregation"] is True
    assert result["n_patients"] == pooled.n_patients and result["n_patients"] is not None
    assert result["regimens"] == dict(pooled.regimens)
    shown = [o for o in result["outcomes"] if o["curve"]]
    assert shown, "at least one regimen has a released curve"
    for got in shown:
        want = next(o for o in pooled.outcomes if o.regimen == got["regimen"])
        assert want.curve is not None and got["curve"]["time"] == list(want.curve.times)
        assert np.allclose(got["curve"]["survival"], want.curve.survival, atol=1e-9)
        assert min(got["curve"]["at_risk"]) >= 10
    assert any("rounding_base" in d for d in run["provenance"]["disclosure"].get("coordinator", []) or
               [x for v in run["provenance"]["disclosure"].values() for x in v])  # fmt: skip


def test_too_narrow_tumour_board_query_is_suppressed_with_the_rule_named(env: dict[str, Any]) -> None:
    narrow = {"tumour_type": "breast", "stages": ["IV"], "biomarkers": {"her2": True, "er": False}, "line": 2}
    run = _analyze(env, function="similar_patients", params=narrow)
    result = run["result"]
    assert result["mode"] == "per_holder" and result["n_patients"] is None
    for answer in result["holders"].values():
        assert answer["n_patients"] is None
        assert all(o["curve"] is None for o in answer["outcomes"])
    reasons = [d for h in run["holders"] for d in h["disclosure"]]
    assert any("min_cell_count" in d or "zeros_are_disclosive" in d for d in reasons)


def test_toxicity_model_is_fitted_pooled_exact_between_real_nodes(env: dict[str, Any]) -> None:
    sm = pytest.importorskip("statsmodels.api")
    run = _analyze(env, function="toxicity_model")
    designs = [toxicity_design(f, OMOP_FEATURES) for f in env["extracts"].values()]
    X = np.vstack([d[0] for d in designs])
    y = np.concatenate([d[1] for d in designs])
    ref = sm.Logit(y, X).fit(disp=0)
    assert run["result"]["terms"] == ["intercept", *OMOP_FEATURES]
    assert (
        np.max(np.abs(np.asarray(run["result"]["coef"]) - ref.params)) < 1e-6
    )  # both stop on deviance change
    assert run["result"]["calibration"]["slope"] == pytest.approx(1.0, abs=1e-6)
