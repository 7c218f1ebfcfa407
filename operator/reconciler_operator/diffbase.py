"""Kopf's diff base without a copy of the spec: a digest of it, in one small annotation.

Kopf keeps the last handled "essence" of an object to tell a real change from noise. Its default
annotation storage copies the whole spec into an annotation, and annotations share a 256 KiB limit:
a large spec made every status patch fail with 422. Kopf builds both sides of the comparison with
`build()`, so replacing the spec there by its SHA-256 keeps change detection exact (any change of
the spec changes the digest) while the annotation stays a few hundred bytes. The handlers never use
Kopf's `old`/`new`/`diff` of the spec (they read `spec` itself); the annotations they watch
(`reconciler.dev/requested-at`, Flux's `requestedAt`) are kept as they are, and nothing else is.

It is stored in `status.handledEssence`, not in an annotation: Kopf writes it after each handled
change together with the status it writes anyway, so a handled creation costs one write (and one
watch event) less. An object last handled by an operator that kept it in the annotation is read
from there until its next handled change.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, cast

import kopf

STATUS_KEY = "handledEssence"
"""`status.handledEssence`: the essence Kopf last handled, as JSON (ReconcileStatus.handled_essence)."""
DIGEST_CACHE_SIZE = 20_000
"""Objects whose spec digest is remembered (about 150 bytes each)."""


def _cached_keys(derive: Callable[[str], Iterable[str]]) -> Callable[[str], tuple[str, ...]]:
    """Kopf derives an annotation's full keys (prefix, V1/V2 shortening, hashing) from a handler id
    or storage key on every use: for every handler on every watch event. They depend on that id
    only (Kopf's `mark_key` changes them for ReplicaSets owned by Deployments, never a Reconcile),
    so each is derived once; the ids are the registered handlers' (a bounded set)."""
    return functools.lru_cache(maxsize=256)(lambda key: tuple(derive(key)))


class SpecDigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def __init__(self, *, prefix: str, key: str, watched_annotations: Collection[str]) -> None:
        super().__init__(prefix=prefix, key=key)
        self.watched_annotations = frozenset(watched_annotations)
        self._keys = _cached_keys(super().make_keys)
        self._digests: dict[str, tuple[int, str]] = {}

    def make_keys(self, key: str, *, body: kopf.Body | None = None) -> Iterable[str]:
        return self._keys(key)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        encoded = (body.get("status") or {}).get(STATUS_KEY)
        if isinstance(encoded, str) and encoded:
            try:
                return cast(kopf.BodyEssence, json.loads(encoded))
            except ValueError:
                return None  # unreadable: handled as a change, never as "nothing changed"
        return super().fetch(body=body)  # written by an operator that kept it in the annotation

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        patch.status[STATUS_KEY] = json.dumps(essence, separators=(",", ":"), sort_keys=True)

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        fields = list(extra_fields or ())
        if all(_root(field) in ("spec", "metadata") for field in fields):
            # Kopf's essence without its deep copy of the whole body (status included), which it
            # would make on every watch event: the spec only becomes a digest below, metadata only
            # the watched annotations, and status is no part of it.
            essence: dict[str, Any] = {
                key: value if key == "spec" else copy.deepcopy(value)
                for key, value in body.items()
                if key not in ("apiVersion", "kind", "metadata", "status")
            }
            essence["metadata"] = {"annotations": dict((body.get("metadata") or {}).get("annotations") or {})}
        else:  # a handler watching a field elsewhere (none today): Kopf's own way
            essence = cast(dict[str, Any], super().build(body=body, extra_fields=fields))
        if "spec" in essence:
            essence["spec"] = {"sha256": self._spec_digest(body, essence["spec"])}
        metadata = essence.get("metadata") or {}
        annotations = {
            key: value
            for key, value in (metadata.get("annotations") or {}).items()
            if key in self.watched_annotations
        }
        essence["metadata"] = {"annotations": annotations} if annotations else {}
        if not essence["metadata"]:
            del essence["metadata"]
        return cast(kopf.BodyEssence, essence)

    def _spec_digest(self, body: kopf.Body, spec: Any) -> str:
        """The spec's SHA-256, computed once per generation of each object, not on every watch event
        (finalizer, status writes): Kubernetes bumps a custom resource's `metadata.generation` on
        every change of its spec (of anything but metadata and status), so an object's uid and
        generation name one spec. Bounded: forgotten all at once past DIGEST_CACHE_SIZE objects."""
        meta = body.get("metadata") or {}
        uid, generation = meta.get("uid"), meta.get("generation")
        key = (uid, generation) if isinstance(uid, str) and uid and isinstance(generation, int) else None
        if key is not None:
            cached = self._digests.get(key[0])
            if cached is not None and cached[0] == key[1]:
                return cached[1]
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if key is not None:
            if len(self._digests) >= DIGEST_CACHE_SIZE:
                self._digests.clear()
            self._digests[key[0]] = (key[1], digest)
        return digest


def _root(field: Any) -> str:
    """The top-level key of a Kopf field spec: `"status.x"`, or a tuple such as `("status", "x")`."""
    path = field.split(".") if isinstance(field, str) else list(field)
    return str(path[0]) if path else ""


class UnmarkedProgressStorage(kopf.AnnotationsProgressStorage):
    """Kopf's progress annotations, cheaper on every watch event, and without its
    `<prefix>/kopf-managed` marker.

    The marker only lets other Kopf operators' diff bases skip our annotations (ours keeps the
    watched ones only), yet adding it was a write of the whole object after each new Reconcile's
    first run: the only thing left in that patch once the diff base went to status.

    A run that succeeds at once (the usual case) leaves no progress behind, yet Kopf looks up every
    handler's annotation on each event and purges them all after each handled change: those
    lookups read the annotations once (not a resolve per key), and a purge of keys present neither
    in the object nor in the patch (nearly always) touches nothing."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__(prefix=prefix)
        self._keys = _cached_keys(super().make_keys)

    def make_keys(self, key: str, *, body: kopf.Body | None = None) -> Iterable[str]:
        return self._keys(key)

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        annotations = _annotations(body)
        for full_key in self.make_keys(key, body=body):
            encoded = annotations.get(full_key)
            decoded = json.loads(encoded) if encoded is not None else None
            if decoded is not None:  # as Kopf's: a "null" record falls through to the next key
                return cast(kopf.ProgressRecord, decoded)
        return None

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        annotations, patched = _annotations(body), _annotations(patch)
        if any(k in annotations or k in patched for k in self.make_keys(key, body=body)):
            super().purge(key=key, body=body, patch=patch)

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        """Kopf's clear deep-copies the essence twice per event to drop its own annotations and
        empty stanzas; our diff base (SpecDigestDiffBaseStorage.build) never has either, so the
        essence is returned as it is unless there is something to drop."""
        if _needs_clearing(essence, f"{self.prefix}/"):
            return super().clear(essence=essence)
        return essence

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return


def _annotations(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The raw annotations of a body or patch (Kopf's views resolve the path on every access)."""
    metadata = body.get("metadata") or {}
    return cast(Mapping[str, Any], metadata.get("annotations") or {})


def _needs_clearing(essence: Mapping[str, Any], prefix: str) -> bool:
    """Would Kopf's `clear` change `essence`: an annotation under `prefix`, or an empty stanza?"""
    metadata = essence.get("metadata")
    if metadata is not None:
        if not metadata:
            return True
        for stanza in ("annotations", "labels"):
            if stanza in metadata and not metadata[stanza]:
                return True
        if any(key.startswith(prefix) for key in metadata.get("annotations") or {}):
            return True
    return "status" in essence and not essence["status"]
