"""The Slack test server (reconciler_testing/slack.py) in a process of its own, with counters the
benchmarks read over HTTP: `python -m bench.slack_proc --latency 0.05 --seed-file seed.json`.

Besides the Slack methods, it answers two benchmark-only methods (never logged as calls):
`bench.stats` (calls by method, calls in flight now, the most in flight at once, and the
time-weighted mean in flight since the last reset) and `bench.reset` (restart those counters).
Prints the api_url on the first line of stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from bench.common import serve_until_stopped
from reconciler_testing import slack as slack_server
from reconciler_testing.slack import SlackTestServer, _Reply


class BenchSlackServer(SlackTestServer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gauge = threading.Lock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._inflight = 0
        self._max_inflight = 0
        self._area = 0.0  # integral of in-flight calls over time
        self._since = self._last = time.monotonic()
        self._by_method: collections.Counter[str] = collections.Counter()
        self._limited = 0

    def _move(self, delta: int, method: str | None = None) -> None:
        with self._gauge:
            now = time.monotonic()
            self._area += self._inflight * (now - self._last)
            self._last = now
            self._inflight += delta
            self._max_inflight = max(self._max_inflight, self._inflight)
            if method is not None:
                self._by_method[method] += 1

    def stats(self) -> dict[str, Any]:
        self._move(0)
        with self._gauge:
            elapsed = max(1e-9, self._last - self._since)
            return {
                "calls": sum(self._by_method.values()),
                "by_method": dict(self._by_method),
                "inflight": self._inflight,
                "max_inflight": self._max_inflight,
                "mean_inflight": self._area / elapsed,
                "seconds": elapsed,
                "usergroups": len(self._groups),
                "rate_limited": self._limited,
            }

    def handle(self, method: str, query: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        if method == "bench.stats":
            return _Reply(200, {"ok": True, **self.stats()})
        if method == "bench.reset":
            with self._gauge:
                inflight = self._inflight
                self._reset_counters()
                self._inflight = inflight
            return _Reply(200, {"ok": True})
        self._move(+1, method)
        try:
            reply = super().handle(method, query, headers, body)
            if reply.status == 429:
                with self._gauge:
                    self._limited += 1
            return reply
        finally:
            self._move(-1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed-file")
    parser.add_argument("--tier-window", type=float, help="enforce Slack's tiers over this many seconds")
    args = parser.parse_args()
    server = BenchSlackServer(latency=args.latency)
    server.page_limit_cap = 200
    server.enforce_tiers(args.tier_window)
    if args.seed_file:
        with open(args.seed_file, encoding="utf-8") as fh:
            server.load_seed(json.load(fh))
    # socketserver listens with a backlog of 5: 32 workers connecting at once would overflow it and
    # see 1 s SYN retransmits, a test-server artefact that is not the reconciler's to pay for.
    slack_server._HTTPServer.request_queue_size = 1024
    server.start()
    serve_until_stopped(server.api_url)
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
