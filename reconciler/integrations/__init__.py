"""Integrations: one folder each (models, planner, client, service), listed in `registry.py`."""
