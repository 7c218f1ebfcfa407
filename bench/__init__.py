"""Benchmarks of the reconciler against real processes: `python -m bench --help`.

Every scenario (P1..P6) starts what it needs on loopback (valkey-server, the Kubernetes API
emulator, the Slack/GitLab test servers, `reconciler run`, `reconciler api`), measures a baseline in
the same run, and reports the result against its target. See docs/benchmarks.md for the method.
"""
