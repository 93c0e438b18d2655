"""[U] The holders of one run: their Analysis-PULL channels, parallel fan-out with retries, secure sums.

Every call goes to a holder's data-plane endpoint with the transfer's bearer token (issued by that holder
at transfer start). Transient failures (connection errors, 502/503/504) are retried with backoff; a refusal
(4xx) is final and its message, naming the disclosure rule or policy, is shown to the researcher.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from d4h.analytics import secagg
from d4h.analytics.disclosure import DisclosureAction
from d4h.analytics.wire import AnalysisRun, HolderStatus, SecAggSpec, TaskReply, TaskRequest
from d4h.contracts.connector import served_by
from d4h.errors import Conflict, D4HError, PolicyDenied, Unavailable, UserError
from d4h.node.context import NodeContext

RETRIES = 3
BACKOFF_S = (0.2, 0.5, 1.0)
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Channel:
    holder: str
    dataset: str
    transfer: str
    agreement: str
    endpoint: str
    token: str

    def status(self) -> HolderStatus:
        return HolderStatus(
            holder=self.holder, dataset=self.dataset, transfer=self.transfer, agreement=self.agreement
        )


def channels_for(node: NodeContext, transfer_ids: list[str]) -> list[Channel]:
    """The usable channel behind each consumer transfer (STARTED Analysis-PULL with a data address)."""
    out: list[Channel] = []
    seen: set[str] = set()
    for tid in transfer_ids:
        t = node.connector.transfers.get(tid)
        if t.side.value != "consumer":
            raise UserError(f"transfer {tid} is not one of ours as consumer")
        if t.format != "Analysis-PULL":
            raise UserError(f"transfer {tid} is {t.format}; analyses need an Analysis-PULL transfer")
        if t.state.value != "STARTED" or t.data_address is None:
            raise Conflict(
                f"transfer {tid} is {t.state.value}, not STARTED: analyses need a running transfer"
            )
        token = t.data_address.endpoint_property("authorization")
        endpoint = t.data_address.endpoint
        if not token or not endpoint:
            raise Conflict(f"transfer {tid} has no data token")
        if not served_by(t.counter_party_id, endpoint, dev_mode=node.settings.dev_mode):
            # The provider chose the address: tasks and the token go only to its own origin (no SSRF).
            raise UserError(f"transfer {tid}: data address {endpoint} is not served by {t.counter_party_id}")
        if t.counter_party_id in seen:
            raise UserError(f"two transfers name the same holder {t.counter_party_id}: one per holder")
        seen.add(t.counter_party_id)
        agreement = node.connector.agreements.get(t.agreement_id)
        out.append(
            Channel(
                t.counter_party_id,
                str(agreement["dataset_id"]),
                tid,
                t.agreement_id,
                endpoint,
                token,
            )
        )
    return out


class HolderFailed(D4HError):
    """A holder refused or failed a task; the run shows which and why."""


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, Unavailable)


class HolderSet:
    """``Holders`` for real nodes: records per-holder progress on the run as it goes."""

    def __init__(
        self,
        run: AnalysisRun,
        channels: list[Channel],
        *,
        progress: Callable[[AnalysisRun], None] = lambda run: None,
        http: httpx.Client | None = None,
    ) -> None:
        self.run = run
        self._channels = {c.holder: c for c in channels}
        self._progress = progress
        self._http = http or httpx.Client(timeout=TIMEOUT_S)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(channels)), thread_name_prefix="fanout")
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._secure_rounds = 0
        self.permits: set[str] = set()
        self.row_sets: dict[str, str] = {}
        self.pooled_actions: list[str] = []
        self.code_version = ""
        self._failed: set[str] = set()

    @property
    def ids(self) -> list[str]:
        return [h for h in self._channels if h not in self._failed]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()

    def note(self, action: DisclosureAction) -> None:
        self.pooled_actions.append(action.describe())

    # -- one task at one holder ------------------------------------------------------------------

    def _task(
        self, channel: Channel, phase: str, state: Mapping[str, Any], secagg_spec: SecAggSpec | None
    ) -> TaskReply:
        req = self.run.request
        with self._lock:
            # Per-holder sequence: a run resumed after a crash asks the same task ids again and gets the
            # holder's recorded answers (no second release).
            seq = self._seq[channel.holder] = self._seq.get(channel.holder, 0) + 1
        task = TaskRequest(
            task_id=f"{self.run.id}.{seq}.{uuid.uuid5(uuid.NAMESPACE_URL, channel.holder).hex[:8]}",
            run_id=self.run.id,
            function=req.function,
            phase=phase,
            selection=req.selection(),
            params=req.params,
            state=dict(state),
            secagg=secagg_spec,
            dp=req.dp,
        )
        body = task.model_dump(mode="json")
        last: Exception | None = None
        for attempt in range(RETRIES + 1):
            try:
                resp = self._http.post(
                    channel.endpoint + "/tasks",
                    json=body,
                    headers={"Authorization": f"Bearer {channel.token}"},
                )
            except httpx.TransportError as exc:
                last = exc
            else:
                if resp.status_code in (502, 503, 504):
                    last = Unavailable(f"{channel.holder} answered {resp.status_code}")
                elif resp.status_code != 200:
                    raise HolderFailed(f"{channel.holder}: {_message(resp)}")
                else:
                    return TaskReply.model_validate(resp.json())
            if attempt < RETRIES:
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        raise HolderFailed(f"{channel.holder} is unreachable after {RETRIES + 1} attempts: {last}")

    def _record(self, holder: str, reply: TaskReply | None, error: str | None) -> None:
        with self._lock:
            statuses = []
            for status in self.run.holders:
                if status.holder == holder:
                    changes: dict[str, Any] = {"rounds": status.rounds + (reply is not None)}
                    if reply is not None:
                        changes["state"] = "DONE"
                        known = set(status.disclosure)
                        changes["disclosure"] = status.disclosure + [
                            _describe(a) for a in reply.disclosure if _describe(a) not in known
                        ]
                        if reply.row_set:
                            self.row_sets[holder] = reply.row_set
                        if reply.permit:
                            self.permits.add(reply.permit)
                        self.code_version = reply.code_version
                    else:
                        changes["state"] = "FAILED"
                        changes["error"] = error
                    status = status.model_copy(update=changes)
                statuses.append(status)
            self.run = self.run.model_copy(update={"holders": statuses})
        self._progress(self.run)

    # -- Holders protocol ------------------------------------------------------------------------

    def ask(
        self,
        phase: str,
        state: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] = {},  # noqa: B006 - never mutated
        *,
        tolerant: bool = False,
        optional: bool = False,
        secagg_spec: SecAggSpec | None = None,
    ) -> dict[str, dict[str, Any]]:
        targets = [self._channels[h] for h in self.ids]
        if not targets:
            raise HolderFailed("no holder is left in this run")

        def one(ch: Channel) -> tuple[str, TaskReply | None, str | None]:
            st = state(ch.holder) if callable(state) else state
            try:
                return ch.holder, self._task(ch, phase, st, secagg_spec), None
            except D4HError as exc:
                return ch.holder, None, exc.message

        results = list(self._pool.map(one, targets))
        out: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        for holder, reply, error in results:
            if reply is None and optional:
                # An optional extra (e.g. AUROC) refused: the run goes on; the refusal is reported.
                self.pooled_actions.append(f"{holder}: {error}")
                continue
            self._record(holder, reply, error)
            if reply is None:
                errors.append(error or holder)
                if tolerant:
                    self._failed.add(holder)
                continue
            out[holder] = reply.payload
        if optional:
            return out
        if errors and not tolerant:
            raise HolderFailed("; ".join(errors))
        if not out:
            raise HolderFailed("every holder refused or failed: " + "; ".join(errors))
        return out

    def secure_sum(self, phase: str, state: Mapping[str, Any], length: int) -> np.ndarray:
        """Keys round, then masked round; a holder missing from either fails the sum (no partial sums)."""
        keys = self.ask("keys", {})
        # Deterministic per run: a coordinator resumed after a crash replays the same steps, gets the
        # holders' recorded keys and shares of this round again, and the masks still cancel.
        with self._lock:
            self._secure_rounds += 1
            round_id = f"{self.run.id}.s{self._secure_rounds}"
        spec = SecAggSpec(
            round_id=round_id,
            public_keys={h: k["public_key"] for h, k in keys.items()},
            length=length,
            attestations={h: k.get("attestation", "") for h, k in keys.items()},
            memberships={h: list(k.get("membership", [])) for h, k in keys.items()},
        )
        try:
            shares = self.ask(
                phase, lambda holder: {**state, "key_ref": keys[holder]["key_ref"]}, secagg_spec=spec
            )
        except HolderFailed as exc:
            raise secagg.SecAggDropout(round_id, [str(exc)]) from exc
        from d4h.analytics.executor.service import unb64

        round_ = secagg.SecAggRound(round_id, {h: unb64(k) for h, k in spec.public_keys.items()}, length)
        return secagg.unmask_sum(
            round_,
            # Each share names the round it was masked for: one from another round (a recorded answer of an
            # earlier attempt) counts as missing, so the sum fails instead of coming out wrong.
            [
                secagg.MaskedShare(str(p.get("round_id", "")), h, tuple(int(v) for v in p["share"]))
                for h, p in shares.items()
            ],
        )


def _describe(action: Mapping[str, str]) -> str:
    text = f"{action.get('action')} {action.get('target')} ({action.get('rule')})"
    return f"{text}: {action['detail']}" if action.get("detail") else text


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error")
        if text:
            return str(text)
    return f"HTTP {resp.status_code}: {str(body)[:200]}"


__all__ = ["Channel", "HolderFailed", "HolderSet", "PolicyDenied", "channels_for"]
