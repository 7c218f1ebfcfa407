"""The `reconciler` command line through its real entry points."""
