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
import hashlib
import json
from collections.abc import Collection, Iterable
from typing import Any, cast

import kopf

STATUS_KEY = "handledEssence"
"""`status.handledEssence`: the essence Kopf last handled, as JSON (ReconcileStatus.handled_essence)."""


class SpecDigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def __init__(self, *, prefix: str, key: str, watched_annotations: Collection[str]) -> None:
        super().__init__(prefix=prefix, key=key)
        self.watched_annotations = frozenset(watched_annotations)

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
            canonical = json.dumps(essence["spec"], sort_keys=True, separators=(",", ":"))
            essence["spec"] = {"sha256": hashlib.sha256(canonical.encode()).hexdigest()}
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


def _root(field: Any) -> str:
    """The top-level key of a Kopf field spec: `"status.x"`, or a tuple such as `("status", "x")`."""
    path = field.split(".") if isinstance(field, str) else list(field)
    return str(path[0]) if path else ""


class UnmarkedProgressStorage(kopf.AnnotationsProgressStorage):
    """Kopf's progress annotations without its `<prefix>/kopf-managed` marker. The marker only lets
    other Kopf operators' diff bases skip our annotations (ours keeps the watched ones only), yet
    adding it was a write of the whole object after each new Reconcile's first run: the only thing
    left in that patch once the diff base went to status."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return
