"""reconciler: make Slack user groups and GitLab memberships match Reconcile resources."""

__version__ = "0.1.0"
