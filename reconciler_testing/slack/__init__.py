"""A local Slack Web API server for tests, written from Slack's method documentation.

The real ``slack_sdk.WebClient`` is pointed at it with ``base_url=server.api_url``, so tests exercise the
SDK's real HTTP, retry and pagination code instead of monkeypatched stubs. Only the methods the reconciler
uses are implemented; request parsing, auth, scope checks, error codes and response shapes follow Slack's
published reference (docs.slack.dev / api.slack.com method pages):

* errors are HTTP 200 ``{"ok": false, "error": ...}``; rate limiting is HTTP 429 with ``Retry-After``;
* ``missing_scope`` carries ``needed`` and ``provided``;
* cursor pagination returns ``response_metadata.next_cursor`` (empty string on the last page);
* ``usergroups.create`` -> ``name_already_exists`` / ``handle_already_exists`` / ``invalid_channel_provided``;
* ``usergroups.users.update`` -> ``no_users_provided`` for an empty list, ``invalid_users`` for unknown or
  deactivated ids, ``invalid_user`` for bots (guests and bots may not be members);
* ``users.lookupByEmail`` -> ``users_not_found``, also for deactivated users.

Modules: `state` (the workspace and its JSON shapes), `methods` (the Web API methods), `paging`
(cursors), `server` (HTTP, auth, faults, tiers, call log; on `reconciler_testing.harness`).

Run standalone (for benchmarks):
``python -m reconciler_testing.slack --port 0 --latency 0.05 --seed-file s.json``;
the first line printed on stdout is the ``api_url``.
"""

from __future__ import annotations

from reconciler_testing.slack.cli import main
from reconciler_testing.slack.server import Call, SlackTestServer
from reconciler_testing.slack.state import DEFAULT_SCOPES, TEAM_ID, TIERS, WRITE_METHODS

__all__ = ["DEFAULT_SCOPES", "TEAM_ID", "TIERS", "WRITE_METHODS", "Call", "SlackTestServer", "main"]
