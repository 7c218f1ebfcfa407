"""The Kopf operator: turns Reconcile resources into runs and reports them on status."""
