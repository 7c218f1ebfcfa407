"""HTTP routers of the sidecar."""
