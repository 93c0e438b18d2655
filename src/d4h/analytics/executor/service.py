"""[H] The holder's task executor: the imperative shell around the pure steps in ``local.py``.

For every task: the data token must be valid for a STARTED Analysis-PULL transfer; the agreement's policy is
evaluated again (scope ``analysis.task``: a revoked or expired permit stops the next task, not only the next
transfer); opt-outs that apply under the permit are removed; the row set is fingerprinted and checked against
the project's history (differencing); the DP budget is charged; the step runs and its output is disclosure
checked; then the row set, the task record and an audit entry (function, version, code version, parameters,
row-set hash, disclosure actions) are written in one transaction before the reply leaves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import d4h
from d4h.analytics import dp, secagg
from d4h.analytics.differencing import check_differencing
from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    DisclosurePolicy,
    DisclosureRefused,
    Rule,
    check_holders,
    refuse,
)
from d4h.analytics.executor.frames import DataSource, FrameCache, LoadedFrame, load_frame
from d4h.analytics.executor.ledger import Ledger
from d4h.analytics.executor.local import LocalOutput, StepInput, run_local
from d4h.analytics.registry import versions
from d4h.analytics.wire import TaskReply, TaskRequest
from d4h.contracts.enforcement import Counterparty, decide
from d4h.errors import Conflict, D4HError, NotFound, PolicyDenied, Unauthenticated, UserError
from d4h.node.context import NodeContext
from d4h.policy import parse_policy
from d4h.policy.model import Scope
from d4h.store.db import transaction
from d4h.trust.credentials import verify_credential
from d4h.trust.jose import peek, sign, verify_by_did

DP_FUNCTIONS = {"feasibility", "histogram"}
ATTESTATION_TYP = "d4h-secagg-key+jwt"
KEY_TTL_S = 600.0


@dataclass(frozen=True)
class PermitFacts:
    project: str  # permit id, or the agreement id without a permit: the unit of differencing and DP budgets
    permit_id: str | None
    granted_at: datetime


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def disclosure_policy(metadata: dict[str, Any]) -> DisclosurePolicy:
    """The dataset's disclosure settings: the defaults, tightened by the holder (never loosened)."""
    changes = metadata.get("disclosure") or {}
    if not isinstance(changes, dict):
        raise UserError("dataset disclosure settings must be an object")
    return DEFAULT_POLICY.tighten(**changes) if changes else DEFAULT_POLICY


class Executor:
    """One per holder node: runs tasks, holds secure-aggregation keys of open rounds in memory."""

    def __init__(self, node: NodeContext) -> None:
        self._node = node
        self.ledger = Ledger(node.engine)
        self._frames = FrameCache()
        self._keys: dict[str, tuple[float, X25519PrivateKey]] = {}
        self._lock = threading.Lock()
        self._key: bytes | None = None

    # -- entry point ------------------------------------------------------------------------------

    def execute(self, token: str, transfer_id: str, req: TaskRequest) -> TaskReply:
        node = self._node
        grant = node.dataplane.check(token, transfer_id)
        transfer = node.connector.transfers.get(transfer_id)
        if transfer.format != "Analysis-PULL":
            raise Conflict("analysis tasks are served on Analysis-PULL transfers only")
        previous = self.ledger.reply_of(req.task_id)
        if previous is not None:
            if previous[0] != transfer_id:
                raise Conflict(f"task id {req.task_id} was already used on another transfer")
            return TaskReply.model_validate_json(previous[1])
        facts = self._check_policy(transfer_id, grant.dataset_id, transfer.agreement_id)
        entry = node.registry.dataset(grant.dataset_id)
        policy = disclosure_policy(entry.metadata)
        try:
            if req.phase == "keys":
                return self._keys_reply(req, grant.dataset_id)
            return self._run(
                req, transfer_id, grant.dataset_id, grant.consumer, facts, entry.metadata, policy
            )
        except DisclosureRefused as refusal:
            node.audit.append(
                actor=grant.consumer,
                action="analysis.refused",
                obj=grant.dataset_id,
                params={
                    "task": req.task_id,
                    "function": req.function,
                    "transfer": transfer_id,
                    "disclosure": [a.as_dict() for a in refusal.actions],
                },
            )
            raise

    # -- policy and permit ------------------------------------------------------------------------

    def _check_policy(self, transfer_id: str, dataset_id: str, agreement_id: str) -> PermitFacts:
        c = self._node.connector
        agreement = c.agreements.get(agreement_id)
        caller = c.transfers.caller_of(transfer_id)
        party = Counterparty.from_json(caller) if caller else Counterparty(agreement["consumer"], frozenset())
        doc = agreement["doc"]
        if agreement.get("consumer") == "*" and isinstance(doc, dict):
            doc = {**doc, "assignee": party.did}
        decision = decide(
            parse_policy(doc),
            party,
            Scope.ANALYSIS_TASK,
            c.clock,
            dataset_id=dataset_id,
            permit_check=c.permit_check,
        )
        if not decision.allowed:
            raise PolicyDenied("the agreement no longer allows analyses: " + "; ".join(decision.reasons))
        return _permit_facts(party, dataset_id, agreement_id, self._node.clock.now())

    # -- secure aggregation keys --------------------------------------------------------------------

    def _keys_reply(self, req: TaskRequest, dataset_id: str) -> TaskReply:
        """A one-use round key attested by this node's DID key, with this node's membership credential:
        each peer checks that every key of the round belongs to a verified data-holder member, so a
        coordinator cannot fill a round with keys of its own and unmask one hospital's vector. (No
        authentication tokens travel: the coordinator could replay those.)"""
        node = self._node
        private, public = secagg.generate_keypair()
        now = time.monotonic()
        with self._lock:
            self._keys = {k: v for k, v in self._keys.items() if now - v[0] < KEY_TTL_S}
            self._keys[req.run_id + "/" + req.task_id] = (now, private)
        own = node.connector.own_did
        key = node.trust.keyring.active
        attestation = sign(
            {"sub": own, "run": req.run_id, "key": b64(public), "iat": int(node.clock.now().timestamp())},
            key,
            kid=f"{own}#{key.kid}",
            typ=ATTESTATION_TYP,
        )
        membership = [c.token for c in node.trust.credentials.all() if "MembershipCredential" in c.types]
        payload = {
            "public_key": b64(public),
            "key_ref": req.task_id,
            "attestation": attestation,
            "membership": membership,
        }
        return self._reply(req, dataset_id, "", payload, ())

    def _check_peers(self, req: TaskRequest, own_public: bytes) -> None:
        """Every key of the round: ours unchanged, each peer's signed by its DID, and that DID holding a
        valid (trusted issuer, unrevoked) membership credential with the dataHolder role."""
        spec = req.secagg
        assert spec is not None
        node = self._node
        own = node.connector.own_did
        if spec.public_keys.get(own) != b64(own_public):
            raise refuse(Rule.MIN_HOLDERS, "secure sum", "the round does not carry this holder's own key")
        credentials = spec.memberships
        for peer, public in spec.public_keys.items():
            if peer == own:
                continue
            try:
                verified = verify_by_did(
                    peek(spec.attestations.get(peer, ""), what="round key attestation"),
                    node.trust.resolver,
                    relationship="assertionMethod",
                    typ=ATTESTATION_TYP,
                    what="round key attestation",
                )
                claims = verified.payload
                if verified.signer != peer or claims.get("sub") != peer or claims.get("key") != public:
                    raise Unauthenticated("the attestation does not bind this key to this holder")
                if claims.get("run") != req.run_id:
                    raise Unauthenticated("the attestation belongs to another run")
                holder = False
                for token in credentials.get(peer, [])[:4]:
                    vc = verify_credential(
                        token,
                        resolver=node.trust.resolver,
                        clock=node.clock,
                        trusted_issuers=node.settings.effective_trusted_issuers,
                        fetch_status_list=node.trust.fetch_status_list,
                    )
                    roles = vc.subject.get("roles") or []
                    holder = holder or (
                        "MembershipCredential" in vc.types and vc.subject_id == peer and "dataHolder" in roles
                    )
            except D4HError as exc:
                raise refuse(
                    Rule.MIN_HOLDERS, "secure sum", f"holder {peer} is not verified: {exc.message}"
                ) from exc
            if not holder:
                raise refuse(Rule.MIN_HOLDERS, "secure sum", f"{peer} shows no data-holder membership")

    def _private_key(self, req: TaskRequest) -> X25519PrivateKey:
        ref = str(req.state.get("key_ref", ""))
        with self._lock:
            found = self._keys.pop(req.run_id + "/" + ref, None)  # one use: a key never masks two vectors
        if found is None:
            raise Conflict("no open secure-aggregation key for this round (expired, used, or node restarted)")
        return found[1]

    # -- the task -----------------------------------------------------------------------------------

    def _frame(
        self, req: TaskRequest, metadata: dict[str, Any], facts: PermitFacts, transfer_id: str
    ) -> tuple[LoadedFrame, int]:
        from d4h.holder.node_routes import analytics_url, held_optouts

        version, optouts = held_optouts(self._node)
        url = analytics_url(self._node)
        if not url.startswith("postgres") and not Path(url).exists():
            raise NotFound("this holder has no analytics store yet (ingest data first)")
        source = DataSource.of(metadata)
        key = hashlib.sha256(
            json.dumps(
                [req.run_id, transfer_id, source.kind, source.name, req.selection.model_dump(), version],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        cached = self._frames.get(key)
        if cached is None:
            cached = load_frame(url, source, req.selection, optouts, facts.granted_at)
            self._frames.put(key, cached)
        return cached, version

    def _run(
        self,
        req: TaskRequest,
        transfer_id: str,
        dataset_id: str,
        consumer: str,
        facts: PermitFacts,
        metadata: dict[str, Any],
        policy: DisclosurePolicy,
    ) -> TaskReply:
        node = self._node
        loaded, optout_version = self._frame(req, metadata, facts, transfer_id)
        rows = loaded.row_set(facts.project, self._rowset_key())
        known = self.ledger.known(facts.project, rows.digest)
        if not known:
            within = policy.min_complement_size
            check_differencing(
                rows, self.ledger.history(facts.project, near_size=rows.size, within=within), policy
            )
        n_holders = len(req.secagg.public_keys) if req.secagg else len(req.state.get("holders", []))
        secure = req.secagg is not None or bool(req.state.get("secure"))
        if secure:
            check_holders(n_holders, policy)
        out = run_local(
            req.function,
            StepInput(
                loaded.frame,
                req.params,
                req.state,
                policy,
                secure=secure or req.dp is not None,  # DP noises the raw vector, not a released one
                holders=n_holders,
                attrition=loaded.attrition,
            ),
        )
        actions = list(out.actions)
        payload = out.payload
        spend: tuple[dp.PrivacyBudget, float, float] | None = None
        if req.dp is not None:
            payload, spend, dp_actions = self._dp_release(req, out, facts, dataset_id, metadata, policy)
            actions.extend(dp_actions)
        elif req.secagg is not None:
            if out.vector is None:
                raise UserError(f"{req.function} ({req.phase}) cannot take part in a secure sum")
            payload = self._masked(req, out.vector)
        elif out.vector is not None and not out.payload:
            raise refuse(Rule.MIN_HOLDERS, req.function, "this step leaves a holder only inside a secure sum")
        reply = self._reply(req, dataset_id, rows.digest, payload, actions, facts.permit_id)
        at = node.clock.now().isoformat()
        record = {
            "task": req.task_id,
            "run": req.run_id,
            "function": req.function,
            "version": versions().get(req.function, ""),
            "code_version": d4h.__version__,
            "phase": req.phase,
            "params": req.params,
            "selection": req.selection.model_dump(exclude_defaults=True),
            "transfer": transfer_id,
            "permit": facts.permit_id,
            "row_set": rows.digest,
            "rows": rows.size,
            "optout_version": optout_version,
            "secure": req.secagg is not None,
            "dp_epsilon": req.dp.epsilon if req.dp else None,
            "disclosure": [a.as_dict() for a in actions],
        }
        with transaction(node.engine) as conn:
            # Tasks of one project may run at once (threads, processes): the row-set check and the record are
            # one step under the project's lock, so near-duplicate row sets cannot both pass unseen.
            self.ledger.lock_project(conn, facts.project)
            recorded = self.ledger.reply_of(req.task_id, conn)
            if recorded is not None:  # the same task, answered meanwhile
                if recorded[0] != transfer_id:
                    raise Conflict(f"task id {req.task_id} was already used on another transfer")
                return TaskReply.model_validate_json(recorded[1])
            known = self.ledger.known(facts.project, rows.digest, conn)
            if not known:
                within = policy.min_complement_size
                check_differencing(
                    rows,
                    self.ledger.history(facts.project, near_size=rows.size, within=within, conn=conn),
                    policy,
                )
            if spend is not None and not self.ledger.charge(conn, spend[0], spend[1], spend[2], at):
                raise refuse(Rule.DP_BUDGET, f"permit {facts.project}", "privacy budget exhausted")
            self.ledger.record(
                conn,
                task_id=req.task_id,
                transfer_id=transfer_id,
                project=facts.project,
                function=req.function,
                rows=rows,
                reply=reply.model_dump_json(),
                record=json.dumps(record, default=str),
                at=at,
                known=known,
            )
            node.audit.append(
                actor=consumer, action="analysis.task", obj=dataset_id, params=record, conn=conn
            )
        return reply

    def _masked(self, req: TaskRequest, vector: np.ndarray) -> dict[str, Any]:
        spec = req.secagg
        assert spec is not None
        own = self._node.connector.own_did
        if own not in spec.public_keys:
            raise UserError("this holder is not part of the secure-aggregation round")
        if len(vector) != spec.length:
            raise UserError(f"round length {spec.length} does not match this step's {len(vector)} values")
        round_ = secagg.open_round(
            spec.round_id, {h: unb64(k) for h, k in spec.public_keys.items()}, spec.length
        )
        private = self._private_key(req)
        self._check_peers(req, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        share = secagg.mask(round_, own, private, vector)
        return {"share": [str(v) for v in share.data], "round_id": spec.round_id}

    def _dp_release(
        self,
        req: TaskRequest,
        out: LocalOutput,
        facts: PermitFacts,
        dataset_id: str,
        metadata: dict[str, Any],
        policy: DisclosurePolicy,
    ) -> tuple[dict[str, Any], tuple[dp.PrivacyBudget, float, float], list[DisclosureAction]]:
        assert req.dp is not None
        if req.function not in DP_FUNCTIONS or req.secagg is not None:
            raise UserError(f"DP mode is available for {', '.join(sorted(DP_FUNCTIONS))} without secure sums")
        settings = metadata.get("dp") or {}
        budget = self.ledger.budget(
            facts.project,
            dataset_id,
            float(settings.get("epsilon", dp.DEFAULT_EPSILON)),
            float(settings.get("delta", dp.DEFAULT_DELTA)),
        )
        raw = out
        if raw.vector is None:
            raise UserError(f"{req.function} has no DP release")
        if req.function == "feasibility":
            release, charged = dp.dp_count(int(raw.vector[0]), budget, req.dp.epsilon)
            payload: dict[str, Any] = {"count": round(float(release.value)), "attrition": []}
        else:
            release, charged = dp.dp_histogram([int(v) for v in raw.vector], budget, req.dp.epsilon)
            payload = {
                "variable": req.params.get("variable"),
                "edges": req.params.get("edges"),
                "counts": [round(float(v)) for v in release.value],
            }
        action = DisclosureAction(
            Rule.DP_BUDGET,
            Action.ROUND,
            req.function,
            f"{release.mechanism} noise (epsilon {release.epsilon:g}); budget left "
            f"{charged.remaining_epsilon:g} of {charged.epsilon:g}",
        )
        return payload, (budget, release.epsilon, release.delta), [action]

    def _reply(
        self,
        req: TaskRequest,
        dataset_id: str,
        digest: str,
        payload: dict[str, Any],
        actions: Any,
        permit: str | None = None,
    ) -> TaskReply:
        return TaskReply(
            task_id=req.task_id,
            function=req.function,
            version=versions().get(req.function, ""),
            code_version=d4h.__version__,
            phase=req.phase,
            dataset=dataset_id,
            holder=self._node.connector.own_did,
            row_set=digest,
            permit=permit,
            payload=payload,
            disclosure=[a.as_dict() for a in actions],
        )

    def _rowset_key(self) -> bytes:
        if self._key is None:
            from d4h.holder.pseudonymise import load_or_create_secret

            self._key = load_or_create_secret(self._node.settings.secrets_dir / "rowset.key").keys[-1]
        return self._key


def _permit_facts(party: Counterparty, dataset_id: str, agreement_id: str, now: datetime) -> PermitFacts:
    """The permit naming this dataset (the earliest granted, when several): project id and grant time.
    Without one, every current opt-out applies and the agreement is the project."""
    found: list[tuple[datetime, str]] = []
    for token in party.permits:
        try:
            subject = peek(str(token), what="permit").payload.get("credentialSubject", {})
            if dataset_id not in subject.get("datasets", []):
                continue
            granted = datetime.fromisoformat(str(subject["grantedAt"]).replace("Z", "+00:00"))
            found.append((granted, str(subject["permitId"])))
        except (D4HError, KeyError, ValueError, AttributeError):
            continue  # not a readable permit: it grants nothing, so it protects nothing either
    if not found:
        return PermitFacts(f"agreement:{agreement_id}", None, now)
    granted, permit_id = min(found)
    return PermitFacts(f"permit:{permit_id}", permit_id, granted)
