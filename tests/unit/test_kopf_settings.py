"""Kopf is configured as the operator needs: sized executor, watch timeouts, our annotation prefix."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import kopf

from reconciler.settings import Settings
from reconciler_operator.context import KOPF_PREFIX, configure_kopf
from tests.valkey_server import ValkeyProcess


def test_configure_kopf() -> None:
    settings = kopf.OperatorSettings()
    config = Settings(valkey_url="unused", max_workers=13, watch_server_timeout=123, watch_client_timeout=150)
    executor = ThreadPoolExecutor(max_workers=config.max_workers)
    configure_kopf(settings, config, executor)
    assert settings.execution.executor is executor and settings.execution.max_workers == 13
    assert settings.watching.server_timeout == 123 and settings.watching.client_timeout == 150
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.progress_storage.prefix == KOPF_PREFIX == "operator.reconciler.dev"
    assert settings.persistence.finalizer.startswith(KOPF_PREFIX + "/")
    assert settings.posting.level == logging.WARNING
    executor.shutdown()


def test_replicas_get_distinct_peering_priorities() -> None:
    priorities = set()
    for _ in range(5):
        settings = kopf.OperatorSettings()
        with ThreadPoolExecutor(max_workers=1) as executor:
            configure_kopf(settings, Settings(valkey_url="unused"), executor)
        assert settings.peering.name == "reconciler" and settings.peering.mandatory is False
        priorities.add(settings.peering.priority)
    assert len(priorities) == 5
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused", peering_priority=7), executor)
    assert settings.peering.priority == 7


def _body(spec: dict[str, object], annotations: dict[str, str] | None = None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "reconciler.dev/v1alpha1",
            "kind": "Reconcile",
            "metadata": {"name": "r", "namespace": "ns", "annotations": annotations or {}},
            "spec": spec,
            "status": {"taskId": "x"},
        }
    )


def test_the_diff_base_is_a_digest_of_the_spec_not_a_copy() -> None:
    from reconciler_operator import handlers
    from reconciler_operator.context import WATCHED_ANNOTATIONS

    assert set(WATCHED_ANNOTATIONS) == {handlers.REQUESTED_AT, handlers.FLUX_REQUESTED_AT}
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused"), executor)
    storage = settings.persistence.diffbase_storage
    users = [f"user{i:05d}@example.com" for i in range(5000)]
    big = {"integration": "slack-usergroups", "slackUsergroups": {"usergroups": [{"users": users}]}}
    annotations = {
        handlers.REQUESTED_AT: "2026-11-29T10:00:00Z",
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 100_000,
        "other.example.com/note": "y" * 50_000,
    }
    essence = storage.build(body=_body(big, annotations))
    patch = kopf.Patch()
    storage.store(body=_body(big, annotations), patch=patch, essence=essence)
    assert set(patch) == {"status"}  # with the status Kopf writes anyway: no write of the object
    stored = patch["status"]["handledEssence"]
    assert len(stored) < 300  # not the 130 KB spec, nor the other annotations
    assert essence["metadata"]["annotations"] == {handlers.REQUESTED_AT: "2026-11-29T10:00:00Z"}
    # Any change of the spec changes the essence; key order does not.
    reordered = dict(reversed(list(big.items())))
    assert storage.build(body=_body(reordered, annotations)) == essence
    changed = {**big, "dryRun": True}
    assert storage.build(body=_body(changed, annotations))["spec"] != essence["spec"]
    # What Kopf reads back is what it builds, so an unchanged object has no diff.
    stored_body = _body(big, annotations)
    stored_body["status"]["handledEssence"] = stored
    assert storage.fetch(body=stored_body) == essence
    # An object last handled by an operator that kept it in the annotation: read from there.
    legacy = {f"{KOPF_PREFIX}/last-handled-configuration": json.dumps(essence)}
    assert storage.fetch(body=_body(big, {**annotations, **legacy})) == essence
    assert storage.fetch(body=_body(big, annotations)) is None  # never handled


def test_shards_peer_apart() -> None:
    names = set()
    for selector in ("reconciler.dev/shard=a", "reconciler.dev/shard=b"):
        settings = kopf.OperatorSettings()
        with ThreadPoolExecutor(max_workers=1) as executor:
            configure_kopf(settings, Settings(valkey_url="unused", shard_selector=selector), executor)
        names.add(settings.peering.name)
    assert len(names) == 2 and "reconciler" not in names


def test_a_rate_limit_is_rescheduled_for_when_the_service_said(valkey_server: ValkeyProcess) -> None:
    from reconciler.cache import connect_cache
    from reconciler.errors import RateLimited, TransientError
    from reconciler.tasks import TaskStore
    from reconciler_operator.context import OperatorContext
    from reconciler_operator.credentials import SecretReader

    settings = Settings(valkey_url=valkey_server.url, backoff_base_seconds=5, retry_after_max_seconds=900)
    context = OperatorContext(
        settings, TaskStore(connect_cache(settings), ttl_seconds=60, history_size=2), SecretReader()
    )
    try:
        # Not the exponential backoff (5 s x 2^10): exactly the (capped) Retry-After, however often.
        assert context.backoff(10, RateLimited("wait", retry_after=120)) == 120
        assert context.backoff(0, RateLimited("wait", retry_after=86400)) == 900
        assert context.backoff(2, TransientError("SlackUnavailable", "503")) == 20
        assert not context.rate_limited("uid-1")
        context.hold_rate_limited("uid-1", 0.2)
        assert context.rate_limited("uid-1") and not context.rate_limited("uid-2")
        time.sleep(0.25)
        assert not context.rate_limited("uid-1")
    finally:
        context.close()


def test_the_diff_base_is_built_as_kopf_builds_it_without_copying_the_body() -> None:
    """The fast essence (no deep copy of status) equals the one through Kopf's own build, which the
    storage still takes for a handler field outside spec/metadata: no object sees a spurious change
    (and no spurious run) after an upgrade, and none is missed."""
    from reconciler_operator import handlers

    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused"), executor)
    storage = settings.persistence.diffbase_storage
    watched = [("spec",), ("metadata", "annotations", handlers.REQUESTED_AT)]
    kopf_way = [*watched, ("status", "absent")]  # takes Kopf's own build; absent, so it adds nothing
    bodies = [
        _body({"integration": "slack-usergroups", "interval": "5m"}),
        _body(
            {"dryRun": True},
            {handlers.REQUESTED_AT: "now", f"{KOPF_PREFIX}/last-handled-configuration": "{}"},
        ),
        kopf.Body(
            {
                "apiVersion": "reconciler.dev/v1alpha1",
                "kind": "Reconcile",
                "metadata": {"name": "r", "labels": {"team": "a"}, "annotations": {"x.example.com/y": "1"}},
                "spec": {"suspend": True},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "claims": [{"target": "t"}]},
                "extra": {"kept": ["as", "is"]},
            }
        ),
        kopf.Body({"apiVersion": "reconciler.dev/v1alpha1", "kind": "Reconcile", "metadata": {"name": "r"}}),
    ]
    for body in bodies:
        fast = storage.build(body=body, extra_fields=watched)
        assert fast == storage.build(body=body, extra_fields=kopf_way)
        assert "status" not in fast
    body = bodies[0]
    essence = storage.build(body=body, extra_fields=watched)
    body["spec"]["interval"] = "6m"  # the essence holds no reference into the body
    assert storage.build(body=body, extra_fields=watched) != essence


def test_no_handler_watches_a_field_outside_spec_and_metadata() -> None:
    """Kopf adds every handler's `field` to the diff base: a status field there would make each
    status patch an essence change (one more write of the diff base per run) and leave the fast
    build above. The handlers watch spec and annotations only."""
    from reconciler_operator import handlers

    registry = kopf.get_default_registry()
    resource = kopf.Resource(handlers.GROUP, handlers.VERSION, handlers.PLURAL)
    fields = (
        registry._watching.get_extra_fields(resource=resource)
        | registry._changing.get_extra_fields(resource=resource)
        | registry._spawning.get_extra_fields(resource=resource)
    )
    assert fields  # the spec and the requested-at annotations
    assert {field[0] for field in fields} <= {"spec", "metadata"}, fields


def _progress_bodies() -> list[kopf.Body]:
    prefix = KOPF_PREFIX
    record = json.dumps({"started": "2026-11-30T05:00:00.000000", "retries": 1, "success": False})
    return [
        _body({"integration": "slack-usergroups"}),  # a run that succeeded at once left nothing
        _body({}, {f"{prefix}/run": record, "other.example.com/x": "1"}),  # a retry in progress
        _body({}, {f"{prefix}/run-update": record, f"{prefix}/touch-dummy": "x"}),
        _body({}, {f"{prefix}/run": "null"}),
        kopf.Body({"apiVersion": "reconciler.dev/v1alpha1", "kind": "Reconcile", "metadata": {"name": "r"}}),
    ]


def _patch(key: str, stored: str | None) -> kopf.Patch:
    """An empty patch, or one that stores the handler's progress already."""
    return kopf.Patch({"metadata": {"annotations": {f"{KOPF_PREFIX}/{key}": stored}}} if stored else {})


def test_the_progress_storage_reads_and_purges_as_kopfs_own() -> None:
    """The cheaper lookups (keys derived once, annotations read once, no purge of absent keys, no
    copy of an essence with nothing to clear) give Kopf exactly what its own storage gives."""
    from reconciler_operator.diffbase import UnmarkedProgressStorage

    ours = UnmarkedProgressStorage(prefix=KOPF_PREFIX)
    kopfs = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    ids = [kopf.HandlerId(i) for i in ("run", "run-update", "progressing-update", "x" * 80)]
    for body in _progress_bodies():
        for key in ids:
            assert ours.fetch(key=key, body=body) == kopfs.fetch(key=key, body=body)
            assert list(ours.make_keys(key, body=body)) == list(kopfs.make_keys(key, body=body))
            for stored in (None, "x"):
                mine, theirs = _patch(key, stored), _patch(key, stored)
                ours.purge(key=key, body=body, patch=mine)
                kopfs.purge(key=key, body=body, patch=theirs)
                assert dict(mine) == dict(theirs)
    essences = [
        {"spec": {"sha256": "0" * 64}},
        {"spec": {"sha256": "0" * 64}, "metadata": {"annotations": {"reconciler.dev/requested-at": "now"}}},
        {"spec": {}, "metadata": {"annotations": {f"{KOPF_PREFIX}/run": "{}", "a.example.com/b": "c"}}},
        {"spec": {}, "metadata": {"annotations": {}, "labels": {}}, "status": {}},
        {"spec": {}, "metadata": {}},
    ]
    for essence in essences:
        cleared = ours.clear(essence=kopf.BodyEssence(**essence))  # type: ignore[typeddict-item]
        assert cleared == kopfs.clear(essence=kopf.BodyEssence(**essence))  # type: ignore[typeddict-item]
    # Kopf writes a handler's progress (a retry) as it always did, without the kopf-managed marker.
    patch = kopf.Patch()
    ours.store(key=ids[0], record={"started": "t", "retries": 1}, body=_progress_bodies()[0], patch=patch)
    assert set(patch["metadata"]["annotations"]) == {f"{KOPF_PREFIX}/run"}


def test_the_spec_digest_is_computed_once_per_generation() -> None:
    """Kubernetes bumps a custom resource's generation on every change of its spec: within one
    generation the digest is remembered (not re-hashed on every watch event); a new generation,
    or another object, is hashed again. Without uid or generation it is always computed."""
    settings = kopf.OperatorSettings()
    with ThreadPoolExecutor(max_workers=1) as executor:
        configure_kopf(settings, Settings(valkey_url="unused"), executor)
    storage = settings.persistence.diffbase_storage

    def body(spec: dict[str, object], uid: str | None, generation: int | None) -> kopf.Body:
        raw = _body(spec)
        if uid is not None:
            raw["metadata"]["uid"] = uid
        if generation is not None:
            raw["metadata"]["generation"] = generation
        return raw

    first, second = {"interval": "5m"}, {"interval": "6m"}
    digest = storage.build(body=body(first, None, None))["spec"]
    assert storage.build(body=body(first, "u1", 1))["spec"] == digest
    assert storage.build(body=body(second, "u1", 2))["spec"] != digest  # a new generation: hashed
    assert storage.build(body=body(first, "u2", 2))["spec"] == digest  # another object: its own
    # Remembered within a generation (the API server never changes a spec without a new one).
    assert storage.build(body=body(second, "u2", 2))["spec"] == digest
    assert storage.build(body=body(second, None, 2))["spec"] != digest
