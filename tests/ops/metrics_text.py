"""Reading /metrics in tests: sample values by name and labels, and every name the server exposes."""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    text: str

    @property
    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(self.text) for s in family.samples]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def families(self) -> set[str]:
        """Names as written in dashboards and docs: sample names plus histogram base names."""
        names = self.names()
        return names | {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


async def scrape(base: str) -> Scrape:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        assert r.status == 200
        return Scrape(await r.text())
