"""The status sidecar: serves task records from the cache over HTTP (async FastAPI)."""
