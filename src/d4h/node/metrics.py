"""Prometheus metrics of one node, on a registry of its own (several nodes may share a test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "d4h_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "d4h_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.audit_head = Gauge(
            "d4h_audit_head_seq", "Sequence number of the newest audit entry", registry=self.registry
        )
        self.worker_items = Counter(
            "d4h_worker_items_total",
            "Items processed by node workers",
            ["worker", "outcome"],
            registry=self.registry,
        )
        # Labelled by kind only: a label per DID or address would let callers grow the registry at will.
        self.rate_limited = Counter(
            "d4h_rate_limited_total",
            "Requests refused with 429 by kind of caller (participant, admin, address)",
            ["kind"],
            registry=self.registry,
        )
        self.guard_refusals = Counter(
            "d4h_request_guard_refusals_total",
            "Requests refused by the request guard (body_too_large, json_too_deep, request_timeout)",
            ["reason"],
            registry=self.registry,
        )
        self.up = Gauge("d4h_node_ready", "1 when the node is ready to serve", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
