"""The sync cache: task records, per-Reconcile history, run locks and finish notifications."""

from reconciler.cache.base import CacheBackend, CacheCorrupt
from reconciler.cache.valkey import ValkeyCache, connect_cache

__all__ = ["CacheBackend", "CacheCorrupt", "ValkeyCache", "connect_cache"]
