"""The Prometheus metrics of one server (its own registry, text format at ``GET /metrics``).

No label takes a value a client chooses, so no client can grow the number of series: requests
are labelled by route template (``/v1/people/{name}/faces``, or ``unmatched``), never by the
path sent; by method only among :data:`METHODS` (the HTTP server accepts any token as a method,
and requests are counted before any route or token is looked at: the rest are ``other``); by
the status the application answered; errors by the code of the service's own table; faces by
the route's constant name.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The methods counted under their own name."""

OTHER_METHOD = "other"
"""The label of every other method."""


def method_label(method: str) -> str:
    """The ``method`` label of a request: the method if it is one of :data:`METHODS`, else
    :data:`OTHER_METHOD`."""
    return method if method in METHODS else OTHER_METHOD


LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Histogram buckets in seconds: from a health probe to a large enrollment."""


class Metrics:
    """Counters, histograms and gauges of the service."""

    def __init__(self, slots_in_use: Callable[[], float], slots: int):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "facenet_http_requests", "HTTP requests answered, by route and status.",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "facenet_http_request_duration_seconds", "Time to answer a request, by route.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter(
            "facenet_errors", "Error responses by error code (see the JSON error shape).",
            ["code"], registry=self.registry)
        self.faces = Counter(
            "facenet_faces", "Faces found in request images, by route.", ["route"],
            registry=self.registry)
        self.enrolled = Counter(
            "facenet_enrolled_faces", "Faces added to the gallery.", registry=self.registry)
        in_use = Gauge("facenet_worker_slots_in_use",
                       "Inference jobs running or waiting for a worker.", registry=self.registry)
        in_use.set_function(slots_in_use)
        Gauge("facenet_worker_slots", "Inference workers plus queue places.",
              registry=self.registry).set(slots)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
