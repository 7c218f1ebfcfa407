"""Shard selectors: Kubernetes label-selector syntax, Kopf's label filters, distinct peering names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reconciler.selector import matches, parse_selector
from reconciler.settings import Settings
from reconciler_operator.sharding import shard_filter

SHARD = "reconciler.dev/shard"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (f"{SHARD}=a", {SHARD: "a"}, True),
        (f"{SHARD}==a", {SHARD: "b"}, False),
        (f"{SHARD}=a", {}, False),
        (f"{SHARD}!=a", {SHARD: "b"}, True),
        (f"{SHARD}!=a", {}, True),  # as Kubernetes: an absent label is "not a"
        (f"{SHARD}!=a", {SHARD: "a"}, False),
        (f"{SHARD} in (a, b)", {SHARD: "b"}, True),
        (f"{SHARD} in (a,b)", {SHARD: "c"}, False),
        (f"{SHARD} notin (a,b)", {SHARD: "c"}, True),
        (f"{SHARD} notin (a,b)", {}, True),
        (SHARD, {SHARD: ""}, True),
        (SHARD, {}, False),
        (f"!{SHARD}", {}, True),
        (f"!{SHARD}", {SHARD: "a"}, False),
        (f"{SHARD} in (a,b), tier=gold", {SHARD: "a", "tier": "gold"}, True),
        (f"{SHARD} in (a,b), tier=gold", {SHARD: "a", "tier": "iron"}, False),
        (f"{SHARD}!=a,{SHARD}!=b", {SHARD: "b"}, False),
    ],
)
def test_selectors_match_as_kubectl_does(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse_selector(selector), labels) is expected
    kopf_labels = shard_filter(selector)
    assert kopf_labels is not None
    assert all(check(labels.get(key)) for key, check in kopf_labels.items()) is expected


@pytest.mark.parametrize(
    "selector", ["", " , ", "a=b=c", "a in b", "a in (b", "a in ()", "a in (b,,c)", "=a", "a b", "a=(b)"]
)
def test_a_bad_selector_is_refused_naming_it(selector: str) -> None:
    with pytest.raises(ValueError, match="selector"):
        parse_selector(selector)
    with pytest.raises(ValidationError, match="shard_selector"):
        Settings(shard_selector=selector)


def test_no_selector_runs_everything() -> None:
    assert shard_filter(None) is None
    assert Settings().kopf_peering_name() == "reconciler"


def test_shards_get_distinct_peering_names_and_replicas_of_one_shard_share_it() -> None:
    a, b = Settings(shard_selector=f"{SHARD}=a"), Settings(shard_selector=f"{SHARD}=b")
    assert a.kopf_peering_name() != b.kopf_peering_name()
    assert a.kopf_peering_name() == Settings(shard_selector=f"{SHARD}=a").kopf_peering_name()
    assert a.kopf_peering_name().startswith("reconciler-shard-")
    assert Settings(shard_selector=f"{SHARD}=a", peering_name="reconciler-a").kopf_peering_name() == (
        "reconciler-a"
    )
    with pytest.raises(ValidationError):
        Settings(peering_name="Not A Name")
