"""Node assembly: build_context() opens the database and migrates; create_app() composes the routers.

Nothing is built at import time, so one test process can run several nodes.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import d4h
from d4h.analytics.coordinator import routes as coordinator_routes
from d4h.analytics.coordinator.runs import Coordinator
from d4h.analytics.executor import routes as executor_routes
from d4h.audit import routes as audit_routes
from d4h.audit.log import AuditLog
from d4h.catalog import routes as catalog_routes
from d4h.catalog.registry import Registry
from d4h.clock import Clock, SystemClock
from d4h.contracts import routes as contract_routes
from d4h.contracts import steps
from d4h.contracts.connector import Connector
from d4h.dataplane import routes as dataplane_routes
from d4h.dataplane.tokens import DataPlane
from d4h.dsp import routes as dsp_routes
from d4h.dsp import tck
from d4h.dsp.client import DspClient
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.errors import ConfigError
from d4h.hdab import routes as hdab_routes
from d4h.hdab.permits import PermitVerifier
from d4h.node import errors as error_table
from d4h.node import health, info, instances
from d4h.node.context import NodeContext
from d4h.node.guard import CallerLimits, Guard, GuardConfig, rate_limited_response
from d4h.node.metrics import NodeMetrics
from d4h.node.observe import Observe
from d4h.node.ratelimit import RateLimited
from d4h.node.roles import modules_for
from d4h.node.settings import NodeSettings, Role
from d4h.node.worker import PeriodicJob, Processor, Worker
from d4h.store import leases
from d4h.store.db import make_engine, transaction
from d4h.store.migrate import upgrade
from d4h.trust import routes as trust_routes
from d4h.trust.issuer import Issuer
from d4h.trust.repository import ApplicationStore, StatusListStore
from d4h.trust.service import NodeTrust
from d4h.web import web_router

_log = logging.getLogger("d4h.node")

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def read_admin_token(settings: NodeSettings) -> str:
    path = settings.secrets_dir / ADMIN_TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"admin token {path} is missing", hint="re-run 'd4h node init' for this directory"
        ) from exc
    if os.stat(path).st_mode & 0o077:
        raise ConfigError(f"admin token {path} is readable by others", hint=f"chmod 600 {path}")
    if len(token) < 32:
        raise ConfigError(f"admin token {path} is too short", hint="use at least 32 random characters")
    return token


def build_context(settings: NodeSettings, *, clock: Clock | None = None) -> NodeContext:
    """Open and migrate the database and set up the audit log; raises D4HError on bad setup."""
    clock = clock or SystemClock()
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    token = read_admin_token(settings)
    audit = AuditLog(engine, clock)
    trust = NodeTrust(
        base_url=settings.base_url,
        keys_dir=settings.keys_dir,
        engine=engine,
        clock=clock,
        dev_mode=settings.dev_mode,
        trusted_issuers=settings.effective_trusted_issuers,
        key_algorithm=settings.key_algorithm,
        status_list_ttl_s=settings.status_list_ttl_s,
        did_ttl_s=settings.did_cache_ttl_s,
        vp_cache_ttl_s=settings.vp_cache_ttl_s,
    )
    issuer = None
    if settings.has(Role.AUTHORITY):
        issuer = Issuer(
            trust,
            ApplicationStore(engine),
            StatusListStore(engine, clock),
            audit,
            clock,
            auto_approve=settings.auto_approve_members,
        )
    instance_id = f"{settings.participant.name}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    registry = Registry(engine, clock)
    dataplane = DataPlane(engine, clock, settings.base_url)
    connector = Connector(
        engine=engine,
        clock=clock,
        audit=audit,
        registry=registry,
        dataplane=dataplane,
        dsp=DspClient(trust),
        own_did=trust.did,
        dsp_base_url=settings.base_url + DEFAULT_BASE_PATH,
        dev_mode=settings.dev_mode,
        instance_id=instance_id,
    )
    if settings.tck_mode:
        connector.scripts = tck.seed(registry, connector, clock)
    # Holders verify presented data permits offline against the trusted HDABs (issue 6).
    connector.permit_check = PermitVerifier(
        resolver=trust.resolver,
        trusted_hdabs=settings.effective_trusted_issuers,
        fetch_status_list=trust.fetch_status_list,
    )
    return NodeContext(
        settings=settings,
        engine=engine,
        clock=clock,
        audit=audit,
        metrics=NodeMetrics(),
        admin_token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        trust=trust,
        registry=registry,
        dataplane=dataplane,
        connector=connector,
        issuer=issuer,
        instance_id=instance_id,
    )


def _processors(ctx: NodeContext) -> list[Processor]:
    c = ctx.connector
    procs: list[Processor] = [
        steps.SendNegotiations(c),
        steps.SendTransfers(c),
        steps.DecideNegotiations(c),
        steps.DecideTransfers(c),
        steps.PolicyMonitor(c, every_s=ctx.settings.policy_monitor_interval_s),
        _checkpoint_job(ctx),
    ]
    if ctx.issuer is not None:
        procs.append(hdab_routes.crawler_for(ctx))
    if ctx.settings.has(Role.HOLDER) and ctx.settings.authority_url:
        from d4h.holder.node_routes import optout_sync_job

        procs.append(optout_sync_job(ctx))
    for module in modules_for(ctx.settings.roles):
        procs.extend(factory(ctx) for factory in module.processors)
    return procs


def _checkpoint_job(ctx: NodeContext) -> Processor:
    def run() -> int:
        # One process checkpoints at a time, even when several share the database.
        now = time.time()
        with transaction(ctx.engine) as conn:
            if not leases.acquire(
                conn,
                "audit-checkpoint",
                "node",
                ctx.instance_id,
                now=now,
                duration=ctx.settings.lease_duration_s,
            ):
                return 0
        try:
            return 1 if ctx.audit.checkpoint(ctx.trust.signer) else 0
        finally:
            with transaction(ctx.engine) as conn:
                leases.release(conn, "audit-checkpoint", "node", ctx.instance_id)

    return PeriodicJob("audit-checkpoint", ctx.settings.audit_checkpoint_interval_s, run)


# FastAPI's native OpenTelemetry hooks stay off: the node has its own metrics (node/metrics.py), and
# OTEL_* environment variables must not make a node export anywhere but its configured participants. Off,
# they also skip a provider lookup per request and a context manager per endpoint call.
_NO_FRAMEWORK_TELEMETRY: dict[str, Any] = (
    {
        "telemetry": {
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        }
    }
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(ctx: NodeContext) -> FastAPI:
    coordinator = Coordinator(ctx) if ctx.settings.has(Role.USER) else None
    procs = _processors(ctx) + ([coordinator] if coordinator is not None else [])
    worker = Worker(procs, interval_s=ctx.settings.worker_interval_s, metrics=ctx.metrics)
    ctx.connector.wake = worker.wake
    if coordinator is not None:
        coordinator.wake = worker.wake

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.audit.append(
            actor=ctx.actor,
            action="node.start",
            obj=ctx.settings.base_url,
            params={"roles": [r.value for r in ctx.settings.roles], "version": d4h.__version__},
        )
        # A predecessor killed without a clean stop held leases: take its work over now, not when they expire.
        for dead, count in instances.reclaim(ctx.engine, ctx.settings.run_dir):
            ctx.audit.append(
                actor=ctx.actor, action="node.reclaim", obj=dead.instance_id, params={"leases": count}
            )
            _log.info(
                "leases of a dead predecessor expired", extra={"instance": dead.instance_id, "leases": count}
            )
        record = instances.register(ctx.settings.run_dir, ctx.instance_id)
        worker.start()
        ctx.ready = True
        _log.info(
            "node ready", extra={"url": ctx.settings.base_url, "roles": [r.value for r in ctx.settings.roles]}
        )
        try:
            yield
        finally:
            # Uvicorn has already let in-flight requests finish; now drain the worker.
            ctx.ready = False
            ctx.draining = True
            stopped = worker.stop(timeout=ctx.settings.shutdown_grace_s)
            if coordinator is not None:
                coordinator.stop()  # running analyses finish their current holder calls
            with transaction(ctx.engine) as conn:
                leases.expire_all_of(conn, ctx.instance_id)
            instances.unregister(record)
            ctx.audit.append(
                actor=ctx.actor, action="node.stop", obj=ctx.settings.base_url, params={"drained": stopped}
            )
            ctx.audit.close()
            ctx.trust.close()
            ctx.connector.sender_pool.shutdown(wait=True)
            ctx.connector.dsp.close()
            ctx.engine.dispose()
            _log.info("node stopped", extra={"drained": stopped})

    app = FastAPI(
        title=f"d4h node: {ctx.settings.participant.name}",
        version=d4h.__version__,
        lifespan=lifespan,
        description="Dataspace4Health participant node. The OpenAPI document is generated from the code.",
        **_NO_FRAMEWORK_TELEMETRY,
    )
    app.state.node = ctx
    app.state.worker = worker
    app.state.coordinator = coordinator  # the web UI's researcher screens submit runs through it
    error_table.install(app)
    # Read by the authentication dependencies (charge_caller) to limit each verified caller.
    app.state.rate_limits = limits = CallerLimits.from_settings(ctx.settings, ctx.metrics)

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        status, body, headers = rate_limited_response(exc)
        return JSONResponse(status_code=status, content=body, headers=headers)

    # Added last = outermost: Observe counts and times the guard's refusals too.
    app.add_middleware(
        Guard, config=GuardConfig.from_settings(ctx.settings), limits=limits, metrics=ctx.metrics
    )
    app.add_middleware(Observe, metrics=ctx.metrics)

    # FastAPI matches included routers in order, about 12 µs for each one passed: the DSP messages and the
    # negotiation/transfer management calls, the hot path, come first (no two routers' paths overlap;
    # tests/component/test_route_permissions.py checks that no route hides another).
    app.include_router(dsp_routes.router)
    app.include_router(contract_routes.router)
    app.include_router(health.router)
    app.include_router(info.router)
    app.include_router(audit_routes.router)
    app.include_router(trust_routes.public_router)
    app.include_router(trust_routes.admin_router)
    if ctx.issuer is not None:
        app.include_router(trust_routes.authority_router)
        app.include_router(hdab_routes.authority_router(ctx))
    if ctx.settings.has(Role.HOLDER):
        app.include_router(hdab_routes.holder_router(ctx))
    app.include_router(hdab_routes.permit_router(ctx))
    app.include_router(dsp_routes.version_router)
    app.include_router(catalog_routes.router)
    app.include_router(catalog_routes.public_router)
    app.include_router(dataplane_routes.router)
    if ctx.settings.has(Role.HOLDER):
        from d4h.holder import node_routes as holder_routes

        app.include_router(holder_routes.router)
        app.include_router(executor_routes.router(ctx))
    if coordinator is not None:
        app.include_router(coordinator_routes.router(coordinator))
    if ctx.settings.tck_mode:
        app.include_router(tck.router)
    for module in modules_for(ctx.settings.roles):
        for factory in module.routers:
            app.include_router(factory(ctx))
    app.include_router(web_router(ctx))
    return app
