"""The Slack test server (reconciler_testing.slack) in a process of its own, with counters the
benchmarks read over HTTP: `python -m bench.slack_proc --latency 0.05 --seed-file seed.json`.

Besides the Slack methods, it answers two benchmark-only methods (never logged as calls):
`bench.stats` (calls by method, calls in flight now, the most in flight at once, and the
time-weighted mean in flight since the last reset) and `bench.reset` (restart those counters).
Prints the api_url on the first line of stdout.
"""

from __future__ import annotations

import argparse
import collections
from email.message import Message
from typing import Any

from bench.common import serve_until_stopped
from reconciler_testing.harness import Response, read_seed
from reconciler_testing.slack import SlackTestServer


class BenchSlackServer(SlackTestServer):
    """The Slack fake plus `bench.stats` / `bench.reset`, read from its public call log and gauge."""

    def stats(self) -> dict[str, Any]:
        calls = self.calls
        return {
            "calls": len(calls),
            "by_method": dict(collections.Counter(c.method for c in calls)),
            **self.in_flight.snapshot(),
            "usergroups": len(self.usergroups()),
            "rate_limited": sum(1 for c in calls if c.status == 429),
        }

    def serve(self, method: str, target: str, headers: Message, body: bytes) -> Response:
        """The bench methods skip the latency and the in-flight gauge that they report on."""
        if target.startswith("/api/bench.stats"):
            return Response.json({"ok": True, **self.stats()})
        if target.startswith("/api/bench.reset"):
            self.reset_calls()
            self.in_flight.reset()
            return Response.json({"ok": True})
        return super().serve(method, target, headers, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed-file")
    parser.add_argument("--tier-window", type=float, help="enforce Slack's tiers over this many seconds")
    args = parser.parse_args()
    server = BenchSlackServer(latency=args.latency)
    server.page_limit_cap = 200
    server.enforce_tiers(args.tier_window)
    server.load_seed(read_seed(args.seed_file))
    server.start()
    serve_until_stopped(server.api_url)
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
