"""A worker's ``/metrics`` page as numbers: fetch it, parse it, sum samples by name and label."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Scrape:
    """Samples of one scrape, as (sample name, sorted label pairs) -> value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``.

        >>> s = parse("a_total{op=\\"load\\"} 2\\na_total{op=\\"save\\"} 3\\n")
        >>> s.total("a_total"), s.total("a_total", op="save"), s.total("missing")
        (5.0, 3.0, 0.0)
        """
        wanted = set(labels.items())
        return sum(
            (
                value
                for (sample, pairs), value in self.samples.items()
                if sample == name and wanted <= set(pairs)
            ),
            0.0,
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Samples called ``name`` summed per value of one label."""
        out: dict[str, float] = {}
        for (sample, pairs), value in self.samples.items():
            if sample == name:
                key = dict(pairs).get(label, "")
                out[key] = out.get(key, 0.0) + value
        return out


def parse(text: str) -> Scrape:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return Scrape(samples)


def fetch(port: int, host: str = "127.0.0.1") -> Scrape | None:
    """The worker's metrics now, or None while it is not listening yet (or has gone)."""
    try:
        with urllib.request.urlopen(
            f"http://{host}:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
        ) as reply:
            return parse(reply.read().decode("utf-8"))
    except (urllib.error.URLError, OSError):
        return None
