"""`python -m reconciler_testing.gitlab`: the GitLab fake in a process of its own."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from reconciler_testing.gitlab.server import GitLabTestServer
from reconciler_testing.harness import add_server_arguments, read_seed, serve_until_signalled


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the base URL on the first line for scripts to read."""
    parser = argparse.ArgumentParser(description="Local GitLab REST API v4 server for tests and benchmarks.")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    server = GitLabTestServer(args.host, args.port, latency=args.latency)
    server.drip_seconds = args.drip_seconds
    server.endless_pages = args.endless_pages
    if args.retry_after:
        server.rate_limit(10**9, retry_after=args.retry_after)
    server.load_seed(read_seed(args.seed_file))
    return serve_until_signalled(server, lambda: server.url)
