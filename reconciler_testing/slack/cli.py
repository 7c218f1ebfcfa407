"""`python -m reconciler_testing.slack`: the Slack fake in a process of its own."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from reconciler_testing.harness import add_server_arguments, read_seed, serve_until_signalled
from reconciler_testing.slack.server import SlackTestServer
from reconciler_testing.slack.state import TEAM_ID


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the api_url first so a harness can use port 0."""
    parser = argparse.ArgumentParser(description="Local Slack Web API test server")
    add_server_arguments(parser)
    parser.add_argument("--page-limit-cap", type=int, default=200)
    parser.add_argument("--tier-window", type=float, help="enforce Slack's tiers over this many seconds")
    parser.add_argument("--team-id", default=TEAM_ID)
    args = parser.parse_args(argv)
    server = SlackTestServer(host=args.host, port=args.port, latency=args.latency, team_id=args.team_id)
    server.page_limit_cap = args.page_limit_cap
    server.drip_seconds = args.drip_seconds
    server.endless_pages = args.endless_pages
    if args.retry_after:
        server.rate_limit(None, 10**9, retry_after=args.retry_after)
    server.enforce_tiers(args.tier_window)
    server.load_seed(read_seed(args.seed_file))
    return serve_until_signalled(server, lambda: server.api_url)
