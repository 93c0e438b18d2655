"""Federated analyses between real nodes: three hospitals hold GBSG2 and the diabetes data row-wise (mod 3),
the institute's node coordinates. Federated results must equal pooled ones; every disclosure rule that can fire
here fires at the holder and is reported; a differencing attack is refused; DP budgets run out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from d4h.analytics.disclosure import bin_times
from d4h.holder.tables import load_table
from d4h.node.settings import Role
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace, until

HOLDERS = ("h0", "h1", "h2")
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
COX = {
    "time": "time",
    "event": "cens",
    "covariates": ["horth", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"],
    "levels": {"horth": ["no", "yes"], "menostat": ["Pre", "Post"], "tgrade": ["I", "II", "III"]},
}
TERMS = [
    "horth_yes",
    "age",
    "menostat_Post",
    "tsize",
    "tgrade_II",
    "tgrade_III",
    "pnodes",
    "progrec",
    "estrec",
]
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
# reference-results.md 3.2 (logistic on pooled ddof=1 z-scores) and 3.1 (OLS, raw units)
LOGISTIC = [
    0.004325,
    0.049360,
    -0.559408,
    0.658382,
    0.549665,
    -1.566865,
    1.086633,
    -0.022780,
    0.040362,
    1.408287,
    0.003094,
]
OLS = [
    -334.567139,
    -0.036361,
    -22.859648,
    5.602962,
    1.116808,
    -1.089996,
    0.746450,
    0.372005,
    6.533832,
    68.483125,
    0.280117,
]


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    from lifelines.datasets import load_gbsg2

    frame: pd.DataFrame = load_gbsg2()
    frame.insert(0, "person_id", np.arange(1, len(frame) + 1))
    return frame


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame: pd.DataFrame = load_diabetes(as_frame=True, scaled=False).frame
    frame["high"] = (frame["target"] > 140.5).astype(int)
    frame.insert(0, "person_id", np.arange(1, len(frame) + 1))
    return frame


def _publish(holder: Node) -> None:
    for ds, table in (("gbsg2", "gbsg2"), ("diabetes", "diabetes")):
        admin_call(holder, "POST", "/api/v1/datasets",
               {"id": ds, "title": f"{ds} (site {holder.key})", "metadata": {"source": {"table": table},
                                                                        "dp": {"epsilon": 1.0}}})  # fmt: skip
    admin_call(holder, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
    admin_call(holder, "POST", "/api/v1/contractdefinitions",
           {"id": "research", "access_policy_id": "users", "contract_policy_id": "users",
            "dataset_ids": ["gbsg2", "diabetes"]})  # fmt: skip


def _open_channel(user: Node, holder: Node, dataset: str) -> str:
    catalog = admin_call(user, "POST", "/api/v1/catalog/request", {"provider_url": holder.url})["catalog"]
    ds = next(d for d in catalog["dataset"] if d["@id"] == dataset)
    started = admin_call(user, "POST", "/api/v1/negotiations",
                     {"provider_url": holder.url, "offer": ds["hasPolicy"][0], "dataset_id": dataset}, 201)  # fmt: skip
    n = until(lambda: admin_call(user, "GET", f"/api/v1/negotiations/{started['id']}"),
               lambda n: n["state"] in ("FINALIZED", "TERMINATED"))  # fmt: skip
    assert n["state"] == "FINALIZED", n
    t = admin_call(
        user, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"}, 201
    )
    t = until(lambda: admin_call(user, "GET", f"/api/v1/transfers/{t['id']}"),
               lambda t: t["state"] in ("STARTED", "TERMINATED"))  # fmt: skip
    assert t["state"] == "STARTED", t
    return str(t["id"])


@pytest.fixture(scope="module")
def space(
    tmp_path_factory: pytest.TempPathFactory, gbsg2: pd.DataFrame, diabetes: pd.DataFrame
) -> Iterator[dict[str, Any]]:
    workdir: Path = tmp_path_factory.mktemp("analytics-space")
    participants = (*((h, Role.HOLDER) for h in HOLDERS), ("institute", Role.USER))
    for space in start_dataspace(workdir, participants=participants):
        channels: dict[str, dict[str, str]] = {"gbsg2": {}, "diabetes": {}}
        for i, key in enumerate(HOLDERS):
            holder = space[key]
            url = str(holder.node_dir / "holder" / "analytics.duckdb")
            load_table(url, "gbsg2", gbsg2[np.arange(len(gbsg2)) % 3 == i].reset_index(drop=True))
            load_table(url, "diabetes", diabetes[np.arange(len(diabetes)) % 3 == i].reset_index(drop=True))
            _publish(holder)
            for ds in channels:
                channels[ds][key] = _open_channel(space["institute"], holder, ds)
        yield {"space": space, "channels": channels}


def _analyze(env: dict[str, Any], dataset: str, expect: str = "COMPLETED", **request: Any) -> dict[str, Any]:
    space: Dataspace = env["space"]
    body = {"transfers": list(env["channels"][dataset].values()), **request}
    run = admin_call(space["institute"], "POST", "/api/v1/analyses?wait=120", body)
    assert run["state"] == expect, (run["error"], run["holders"])
    return dict(run)


def test_federated_km_equals_pooled_on_binned_times_between_real_nodes(
    env: dict[str, Any], gbsg2: pd.DataFrame
) -> None:
    from lifelines import KaplanMeierFitter

    run = _analyze(
        env, "gbsg2", function="kaplan_meier", params={"time": "time", "event": "cens", "bin_width": 30}
    )
    curve = run["result"]["groups"]["all"]
    pooled = KaplanMeierFitter().fit(bin_times(gbsg2.time, 30), gbsg2.cens)
    expected = pooled.survival_function_.loc[curve["time"], "KM_estimate"].to_numpy()
    assert np.max(np.abs(np.array(curve["survival"]) - expected)) <= 1e-9
    assert curve["median"] == pytest.approx(1830.0)
    assert len(run["provenance"]["holders"]) == 3
    assert all(h["state"] == "DONE" for h in run["holders"])
    # The local tails with fewer than 10 at risk were withheld by the holders, and the run says so.
    assert any("min_at_risk" in d for h in run["holders"] for d in h["disclosure"])


def test_stratified_cox_equals_reference_between_real_nodes(env: dict[str, Any]) -> None:
    run = _analyze(env, "gbsg2", function="cox", params={**COX, "method": "stratified"})
    result = run["result"]
    assert result["terms"] == TERMS
    # reference-results.md 1.4(a): stratified by site (mod 3), Efron
    assert result["coef"][0] == pytest.approx(-0.353603, abs=1e-6)


def test_webdisco_cox_under_secure_aggregation_equals_pooled_fit_between_real_nodes(
    env: dict[str, Any], gbsg2: pd.DataFrame
) -> None:
    from lifelines import CoxPHFitter

    run = _analyze(
        env, "gbsg2", function="cox", secure=True, params={**COX, "method": "webdisco", "bin_width": 30}
    )
    design = pd.DataFrame({
        "horTh_yes": (gbsg2.horTh == "yes").astype(float), "age": gbsg2.age,
        "menostat_Post": (gbsg2.menostat == "Post").astype(float), "tsize": gbsg2.tsize,
        "tgrade_II": (gbsg2.tgrade == "II").astype(float), "tgrade_III": (gbsg2.tgrade == "III").astype(float),
        "pnodes": gbsg2.pnodes, "progrec": gbsg2.progrec, "estrec": gbsg2.estrec,
        "T": bin_times(gbsg2.time, 30), "E": gbsg2.cens,
    })  # fmt: skip
    fit = CoxPHFitter().fit(design, "T", "E")
    assert np.array(run["result"]["coef"]) == pytest.approx(fit.params_.to_numpy(), abs=1e-6)
    assert run["provenance"]["secure_aggregation"] is True


def test_webdisco_cox_is_refused_by_holders_without_secure_aggregation(env: dict[str, Any]) -> None:
    run = _analyze(
        env, "gbsg2", expect="FAILED", function="cox", params={**COX, "method": "webdisco", "bin_width": 30}
    )
    assert "secure" in run["error"]


def test_federated_logistic_equals_pooled_coefficients_and_auroc(env: dict[str, Any]) -> None:
    run = _analyze(env, "diabetes", function="glm", secure=True,
                   params={"outcome": "high", "covariates": FEATURES, "family": "binomial", "standardize": True})  # fmt: skip
    result = run["result"]
    assert result["coef"] == pytest.approx(LOGISTIC, abs=1e-6)
    assert round(result["auroc"], 6) == pytest.approx(0.852480)


def test_federated_ols_equals_pooled_r2_and_coefficients(env: dict[str, Any]) -> None:
    run = _analyze(env, "diabetes", function="glm", params={"outcome": "target", "covariates": FEATURES})
    result = run["result"]
    assert result["r_squared"] == pytest.approx(0.517748, abs=1e-6)
    assert result["coef"] == pytest.approx(OLS, abs=1e-5)
    assert result["terms"][0] == "intercept"


def test_small_counts_are_suppressed_by_each_holder(env: dict[str, Any]) -> None:
    run = _analyze(env, "gbsg2", function="feasibility", filters=[{"column": "age", "op": ">=", "value": 72}])
    # GBSG2 holds 2, 7 and 4 women aged 72+ at the three sites: each holder suppresses its count.
    assert all(v is None for v in run["result"]["per_holder"].values())
    assert all(any("min_cell_count" in d for d in h["disclosure"]) for h in run["holders"])


def test_differencing_attack_is_refused_by_the_holder(env: dict[str, Any], gbsg2: pd.DataFrame) -> None:
    everyone = _analyze(
        env, "gbsg2", function="feasibility", filters=[{"column": "tsize", "op": ">", "value": 0}]
    )
    assert everyone["result"]["total"] is not None
    target = int(gbsg2.person_id.iloc[0])  # held by h0 (row 0)
    attack = _analyze(env, "gbsg2", function="feasibility",
                      filters=[{"column": "tsize", "op": ">", "value": 0}, {"column": "person_id", "op": "!=", "value": target}])  # fmt: skip
    h0 = next(h for h in attack["holders"] if h["holder"] == env["space"]["h0"].did)
    assert h0["state"] == "FAILED"
    assert "differencing" in (h0["error"] or "")
    assert attack["result"]["per_holder"].get(h0["holder"]) is None


def test_dp_counts_spend_the_permit_budget_until_refused(env: dict[str, Any]) -> None:
    first = _analyze(env, "diabetes", function="feasibility", dp={"epsilon": 0.6})
    assert first["result"]["total"] is not None
    assert all(any("epsilon" in d for d in h["disclosure"]) for h in first["holders"])
    second = _analyze(env, "diabetes", expect="FAILED", function="feasibility", dp={"epsilon": 0.6})
    assert "budget" in second["error"]
    assert all(h["state"] == "FAILED" and "budget" in (h["error"] or "") for h in second["holders"])


def test_holders_audit_each_task_with_function_version_and_row_set(env: dict[str, Any]) -> None:
    space: Dataspace = env["space"]
    from d4h.audit.chain import params_digest

    h1 = space["h1"]
    entries = space.audit_since(h1, 0)
    audited = {e["params_hash"] for e in entries if e["action"] == "analysis.task"}
    tasks = admin_call(h1, "GET", "/api/v1/holder/analysis-tasks?limit=500")
    assert len(tasks) == len(audited) > 0
    for task in tasks:
        record = task["record"]
        assert record["version"] and record["code_version"] and len(record["row_set"]) == 64
        assert params_digest(record) in audited  # the log commits to exactly what the steward sees
    refused = [e for e in entries if e["action"] == "analysis.refused"]
    assert refused  # the differencing attack and the spent budget


@pytest.fixture(scope="module")
def env(space: dict[str, Any]) -> dict[str, Any]:
    return space


def test_holder_refuses_a_secure_round_padded_with_keys_the_coordinator_controls(env: dict[str, Any]) -> None:
    """A coordinator that adds its own keys to a round could unmask one hospital's vector by subtraction;
    each holder verifies every other key's DID attestation and data-holder membership first."""
    from d4h.analytics import secagg
    from d4h.analytics.executor.service import ATTESTATION_TYP, b64
    from d4h.node.settings import load_settings
    from d4h.trust.jose import sign
    from d4h.trust.keys import load_keyring

    space: Dataspace = env["space"]
    institute = space["institute"]
    channels = env["channels"]["gbsg2"]
    ends = {}
    for key in ("h0", "h1"):
        t = admin_call(institute, "GET", f"/api/v1/transfers/{channels[key]}")
        ends[key] = (t["endpoint"], {"Authorization": f"Bearer {t['authorization']}"})
    run = "run-evil-0001"
    keys = {}
    for n, key in enumerate(("h0", "h1")):
        endpoint, auth = ends[key]
        body = {"task_id": f"{run}.k{n}.aaaaaaaa", "run_id": run, "function": "feasibility", "phase": "keys"}
        reply = httpx.post(endpoint + "/tasks", json=body, headers=auth, timeout=60).json()
        keys[space[key].did] = reply["payload"]
    # The third "holder" is the institute itself: a real member, with a real DID key — but not a data holder.
    ring = load_keyring(load_settings(institute.node_dir).keys_dir)
    _, fake_public = secagg.generate_keypair()
    fake = {
        "public_key": b64(fake_public),
        "attestation": sign({"sub": institute.did, "run": run, "key": b64(fake_public), "iat": int(time.time())},
                            ring.active, kid=f"{institute.did}#{ring.active.kid}", typ=ATTESTATION_TYP),
        "membership": [],
    }  # fmt: skip
    members = {**keys, institute.did: fake}
    spec = {
        "round_id": f"{run}.r1",
        "public_keys": {d: k["public_key"] for d, k in members.items()},
        "length": 1,
        "attestations": {d: k["attestation"] for d, k in members.items()},
        "memberships": {d: k["membership"] for d, k in members.items()},
    }
    endpoint, auth = ends["h0"]
    body = {"task_id": f"{run}.m0.aaaaaaaa", "run_id": run, "function": "feasibility", "phase": "local",
            "state": {"key_ref": keys[space["h0"].did]["key_ref"]}, "secagg": spec}  # fmt: skip
    refused = httpx.post(endpoint + "/tasks", json=body, headers=auth, timeout=60)
    assert refused.status_code == 403, refused.text
    assert "data-holder membership" in refused.json()["message"]
    assert institute.did in refused.json()["message"]
