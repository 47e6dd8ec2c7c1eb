"""Every service's ``GET /metrics``, with prometheus_client.

Each component has its own :class:`Metrics`: a ``CollectorRegistry`` (never the global one: a
process, the tests' especially, builds many apps), holding

* ``alertflow_http_requests_total{method, route, status}`` (a counter) and
  ``alertflow_http_request_duration_seconds{method, route}`` (a histogram), moved by the common
  API after every request;
* ``alertflow_component_info{id, kind, version}``, the component's identity;
* the component's own families, read from its state at each scrape: whatever
  :meth:`.common.Component.metric_families` yields (:func:`counter`, :func:`gauge`,
  :func:`gauges_by` make them).

:meth:`Metrics.exposition` renders it for the scraper's ``Accept`` header: the Prometheus text
format, or OpenMetrics if asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


def counter(name: str, text: str, value: float) -> CounterMetricFamily:
    """A total kept elsewhere (``name`` without ``_total``, which the exposition adds)."""
    return CounterMetricFamily(name, text, value=value)


def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def gauges_by(name: str, text: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    """One gauge per value of ``label``."""
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class _Families(Collector):
    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


class Metrics:
    """One component's registry (see the module docstring)."""

    def __init__(
        self, id: str, kind: str, version: str, families: Callable[[], Iterable[Metric]]
    ) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "alertflow_http_requests",
            "HTTP requests by method, route and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "alertflow_http_request_duration_seconds",
            "HTTP request latency",
            ("method", "route"),
            registry=self.registry,
        )
        Info("alertflow_component", "The component's identity", registry=self.registry).info(
            {"id": id, "kind": kind, "version": version}
        )
        self.registry.register(_Families(families))

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type, in the format ``accept`` asks for."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
