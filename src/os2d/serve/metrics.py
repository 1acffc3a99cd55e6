"""Prometheus metrics of the service (``GET /metrics``, text exposition format).

Each app owns its registry (no module-level state). With several uvicorn workers ``os2d serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so that prometheus_client writes
every worker's samples there and any worker answers ``/metrics`` for all of them.
"""
from __future__ import annotations

import os
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _StateCollector:
    """Gauges read when scraped: catalog size and version, queue depth of this worker."""

    def __init__(self, state: Callable[[], dict]) -> None:
        self.state = state

    def collect(self):
        now = self.state()
        for name, help_text in (("catalog_classes", "Classes in the catalog."),
                                ("catalog_version", "Version of the catalog (bumped by every change)."),
                                ("queue_waiting", "Requests waiting for a compute slot (this worker)."),
                                ("queue_running", "Requests computing (this worker).")):
            yield GaugeMetricFamily(f"os2d_{name}", help_text, value=float(now[name]))

    def describe(self):
        return []


class Metrics:
    """The service's counters and histograms.

    Args:
        state: returns ``{"catalog_classes", "catalog_version", "queue_waiting", "queue_running"}``.
    """

    def __init__(self, state: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("os2d_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("os2d_request_duration_seconds", "Request latency by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.detections = Counter("os2d_detections", "Boxes returned by /detect.", registry=self.registry)
        self.state_collector = _StateCollector(state)

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> tuple:
        """(body, content type) of a scrape."""
        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        registry_state = CollectorRegistry()
        registry_state.register(self.state_collector)
        return generate_latest(registry) + generate_latest(registry_state), CONTENT_TYPE_LATEST
