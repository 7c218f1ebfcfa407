"""The Reconcile CRD (deploy/crds/) against the contract, the pydantic spec models, the examples and the
bad manifests in tests/manifests/bad/.

The CRD is generated from the models (reconciler/crdgen.py). Manifests are checked as the API server
would: reconciler/crd.py's JSON-Schema validation of the generated schema, then its CEL rules with a real
CEL implementation (common-expression-language, and cel-python as a second opinion; tests/crd_validation.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from reconciler.crd import crd_version, load_crd, load_yaml_documents, openapi_schema
from reconciler.crdgen import model_schema, structural_problems
from reconciler.integrations.base import Integration
from reconciler.integrations.registry import INTEGRATIONS
from reconciler.integrations.slack_usergroups.models import SlackUsergroupsSpec
from reconciler.models.spec import DURATION_PATTERN, ReconcileSpec, parse_duration
from reconciler.models.status import ReconcileStatus
from tests import crd_validation as crdv

CRD = load_crd(crdv.CRD_PATH)
SCHEMA = openapi_schema(CRD)
SPEC_SCHEMA = SCHEMA["properties"]["spec"]
STATUS_SCHEMA = SCHEMA["properties"]["status"]

EXAMPLE_FILES = sorted(crdv.EXAMPLES_DIR.glob("*.yaml"))
EXAMPLE_RECONCILES = [
    pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")
    for path in EXAMPLE_FILES
    for doc in load_yaml_documents(path)
    if doc.get("kind") == "Reconcile"
]
BAD_MANIFESTS = sorted(crdv.BAD_MANIFESTS_DIR.glob("*.yaml"))

RULE_GITLAB_NOT_EMPTY = "gitlabMembers needs at least one entry in groups or projects"
RULE_INTERVAL_POSITIVE = "interval must be longer than zero"
RULE_INTERVAL_MAX = "interval must be at most 8760h (365 days)"


def expect_comments(path: Path) -> list[str]:
    """The `# expect: <text>` lines of a manifest: substrings its validation errors must contain."""
    return [m.strip() for m in re.findall(r"^#\s*expect:\s*(.+)$", path.read_text(), flags=re.MULTILINE)]


def _errors_text(errors: list[crdv.FieldError]) -> str:
    return "\n".join(str(error) for error in errors) or "(no errors)"


# --- (a) the CRD itself ---


def test_crd_schema_is_structural() -> None:
    assert structural_problems(SCHEMA) == []


def test_crd_is_a_valid_kubernetes_object() -> None:
    """The CRD manifest itself, against the API's own OpenAPI schema (strict: no unknown fields).
    `reason` and `fieldPath` of validation rules need Kubernetes 1.28 or later."""
    for version in ("1.28.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(CRD, version, strict=True)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"description": "no type"}}}, "type is missing"),
        (
            {"type": "object", "properties": {}, "additionalProperties": False},
            "additionalProperties are not allowed",
        ),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "needs items"),
        ({"type": "object", "properties": {"a": {"type": "object"}}}, "would have all its fields pruned"),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/x", "type": "string"}}},
            "$ref and additionalProperties",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}},
            "must not set type or default",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["k"],
                        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    }
                },
            },
            "list map keys must be required",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "array",
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    }
                },
            },
            "needs scalar items",
        ),
        ({"type": "object", "properties": {"a": {"type": "string", "default": 3}}}, "default is invalid"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "object", "properties": {}, "default": {"b": 1}}},
            },
            'unknown field "b"',
        ),
        (
            {
                "type": "object",
                "properties": {},
                "x-kubernetes-validations": [{"rule": "true", "message": "a\nb"}],
            },
            "message must be one line",
        ),
        (
            {
                "type": "object",
                "properties": {},
                "x-kubernetes-validations": [{"rule": "true", "message": "m", "fieldPath": ".b"}],
            },
            "fieldPath must name a property",
        ),
        ({"type": "string"}, "root schema must be of type object"),
    ],
)
def test_structural_checker_finds_problems(schema: dict[str, Any], problem: str) -> None:
    problems = structural_problems(schema)
    assert any(problem in text for text in problems), problems


def test_crd_names_scope_and_version() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == "reconciles.reconciler.dev"
    spec = CRD["spec"]
    assert spec["group"] == "reconciler.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "Reconcile",
        "listKind": "ReconcileList",
        "plural": "reconciles",
        "singular": "reconcile",
        "shortNames": ["rec"],
        "categories": ["all"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1alpha1", True, True)]
    assert crd_version(CRD)["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in crd_version(CRD)["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Integration", "string", ".spec.integration", 0),
        ("DryRun", "boolean", ".spec.dryRun", 0),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', 0),
        ("Drifted", "string", '.status.conditions[?(@.type=="Drifted")].status', 0),
        ("Last Task", "string", ".status.taskId", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]


def test_printer_columns_point_at_declared_fields() -> None:
    for column in crd_version(CRD)["additionalPrinterColumns"]:
        parts = re.sub(r"\[\?\(.*?\)\]", "", column["jsonPath"]).strip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = SCHEMA
        for part in parts:
            node = node.get("items", node)
            assert part in node.get("properties", {}), f"{column['name']}: {column['jsonPath']}"
            node = node["properties"][part]
        expected = {"boolean": "boolean", "date": "string"}.get(column["type"], column["type"])
        assert node["type"] == expected, column["name"]


def test_every_field_has_a_description() -> None:
    missing = [
        path or "<root>"
        for path, schema in crdv.iter_schemas(SCHEMA)
        if path != "metadata" and not schema.get("description", "").strip()
    ]
    assert missing == []


def test_spec_is_bounded_for_cel_cost_estimation() -> None:
    """Every list has maxItems and every string maxLength, so the API server's CEL cost estimate is
    finite (and so are the objects people can store)."""
    unbounded = [
        path
        for path, schema in crdv.iter_schemas(SPEC_SCHEMA, "spec")
        if (schema.get("type") == "array" and "maxItems" not in schema)
        or (schema.get("type") == "string" and "maxLength" not in schema)
    ]
    assert unbounded == []
    assert STATUS_SCHEMA["properties"]["actions"]["maxItems"] == 50
    assert STATUS_SCHEMA["properties"]["conditions"]["maxItems"] == 8


def test_spec_required_enums_and_defaults() -> None:
    props = SPEC_SCHEMA["properties"]
    assert SCHEMA["required"] == ["spec"]
    assert SPEC_SCHEMA["required"] == ["integration", "credentials"]
    assert props["integration"]["enum"] == sorted(INTEGRATIONS) == list(INTEGRATIONS)
    assert {name: props[name].get("default") for name in ("dryRun", "suspend")} == {
        "dryRun": False,
        "suspend": False,
    }
    assert props["interval"]["pattern"] == DURATION_PATTERN
    secret_ref = props["credentials"]["properties"]["secretRef"]
    assert props["credentials"]["required"] == ["secretRef"]
    assert secret_ref["required"] == ["name"]
    assert secret_ref["properties"]["key"]["default"] == "token"
    assert secret_ref["properties"]["name"]["maxLength"] == 253
    member = props["gitlabMembers"]["properties"]["groups"]["items"]["properties"]["members"]["items"]
    assert member["required"] == ["username", "accessLevel"]
    assert member["properties"]["accessLevel"]["enum"] == [
        "guest",
        "planner",
        "reporter",
        "developer",
        "maintainer",
        "owner",
    ]
    # A date, or the empty string ("no expiry": clears one).
    assert member["properties"]["expiresAt"]["anyOf"] == [{"format": "date"}, {"maxLength": 0}]
    gitlab = props["gitlabMembers"]["properties"]
    assert gitlab["groups"]["items"] == gitlab["projects"]["items"]


def test_list_types() -> None:
    list_types = {
        path: (schema["x-kubernetes-list-type"], schema.get("x-kubernetes-list-map-keys"))
        for path, schema in crdv.iter_schemas(SCHEMA)
        if "x-kubernetes-list-type" in schema
    }
    assert list_types == {
        "spec.slackUsergroups.usergroups": ("map", ["handle"]),
        "spec.slackUsergroups.usergroups[].users": ("set", None),
        "spec.slackUsergroups.usergroups[].channels": ("set", None),
        "spec.gitlabMembers.groups": ("map", ["path"]),
        "spec.gitlabMembers.groups[].members": ("map", ["username"]),
        "spec.gitlabMembers.projects": ("map", ["path"]),
        "spec.gitlabMembers.projects[].members": ("map", ["username"]),
        "status.conditions": ("map", ["type"]),
    }


# --- the CRD is the models' (generated by reconciler/crdgen.py) ---


def test_spec_blocks_are_the_registrys_models() -> None:
    """The spec schema has one block per integration, generated from its model."""
    blocks = {integration.spec_field: integration.spec_model for integration in INTEGRATIONS.values()}
    for field, model in blocks.items():
        assert SPEC_SCHEMA["properties"][field] == model_schema(model)
    assert set(SPEC_SCHEMA["properties"]) == {
        *blocks,
        *(f.alias for f in ReconcileSpec.model_fields.values()),
    }


# --- (b) the examples ---


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLE_FILES}
    assert {
        "slack-usergroups.yaml",
        "slack-usergroups-dryrun.yaml",
        "gitlab-members.yaml",
        "secrets.example.yaml",
    } <= names
    assert len(EXAMPLE_RECONCILES) >= 3


@pytest.mark.parametrize("doc", EXAMPLE_RECONCILES)
def test_example_is_accepted_by_the_crd(doc: dict[str, Any]) -> None:
    errors = crdv.validate_reconcile(doc, CRD)
    assert errors == [], _errors_text(errors)
    assert crdv.validate_reconcile(doc, CRD, engine="celpy") == []


@pytest.mark.parametrize("doc", EXAMPLE_RECONCILES)
def test_example_is_accepted_by_the_model(doc: dict[str, Any]) -> None:
    spec = ReconcileSpec.model_validate(doc["spec"])
    assert spec.integration in INTEGRATIONS
    # The API server's defaults are the model's defaults: the defaulted spec means the same thing.
    defaulted = crdv.apply_defaults(doc, SCHEMA)["spec"]
    again = ReconcileSpec.model_validate(defaulted)
    fields = set(ReconcileSpec.model_fields)
    assert again.model_dump(include=fields) == spec.model_dump(include=fields)
    assert again.integration_spec == spec.integration_spec


def test_examples_namespaces_and_secrets() -> None:
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    for path in EXAMPLE_FILES:
        for doc in load_yaml_documents(path):
            if doc["kind"] == "Secret":
                assert path.name == "secrets.example.yaml", "Secrets belong in secrets.example.yaml only"
                kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
                data = doc["stringData"]
                assert all("REPLACE-ME" in value for value in data.values()), "placeholders only"
                secrets[(doc["metadata"]["namespace"], doc["metadata"]["name"])] = data
    assert secrets, "secrets.example.yaml has no Secret"
    for param in EXAMPLE_RECONCILES:
        (doc,) = param.values
        namespace = doc["metadata"]["namespace"]
        expected_namespace = {"slack-usergroups": "team-sre", "gitlab-members": "team-platform"}
        assert namespace == expected_namespace[doc["spec"]["integration"]]
        ref = crdv.apply_defaults(doc, SCHEMA)["spec"]["credentials"]["secretRef"]
        assert ref["key"] in secrets[(namespace, ref["name"])], (
            f"{doc['metadata']['name']}: no such Secret key"
        )


def test_slack_example_is_the_contracts_example() -> None:
    (doc,) = load_yaml_documents(crdv.EXAMPLES_DIR / "slack-usergroups.yaml")
    assert doc["metadata"] == {"name": "sre-usergroups", "namespace": "team-sre"}
    spec = ReconcileSpec.model_validate(doc["spec"])
    assert (spec.integration, spec.dry_run, spec.suspend, spec.interval) == (
        "slack-usergroups",
        False,
        False,
        "10m",
    )
    assert spec.credentials.secret_ref.name == "slack-bot"
    block = spec.integration_spec
    assert isinstance(block, SlackUsergroupsSpec)
    (group,) = block.usergroups
    assert (group.handle, group.users, group.channels) == (
        "sre-oncall",
        ["alice@example.com", "bob@example.com"],
        ["sre", "incidents"],
    )


def test_unquoted_dates_stay_strings_as_kubectl_sends_them(tmp_path: Path) -> None:
    (tmp_path / "rec.yaml").write_text(
        (crdv.EXAMPLES_DIR / "gitlab-members.yaml").read_text().replace('"2027-01-31"', "2027-01-31")
    )
    (doc,) = load_yaml_documents(tmp_path / "rec.yaml")
    assert doc["spec"]["gitlabMembers"]["groups"][0]["members"][1]["expiresAt"] == "2027-01-31"
    assert crdv.validate_reconcile(doc, CRD) == []


def test_nulls_are_dropped_before_validation() -> None:
    (doc,) = load_yaml_documents(crdv.EXAMPLES_DIR / "slack-usergroups.yaml")
    doc["spec"]["interval"] = None
    assert crdv.validate_reconcile(doc, CRD) == []
    assert "interval" not in crdv.apply_defaults(doc, SCHEMA)["spec"]
    assert ReconcileSpec.model_validate(doc["spec"]).interval is None


# --- (c) the bad manifests ---

REQUIRED_BAD_CASES = {
    "unknown-integration.yaml",
    "missing-credentials.yaml",
    "missing-slack-block.yaml",
    "missing-gitlab-block.yaml",
    "both-blocks.yaml",
    "bad-email.yaml",
    "bad-handle.yaml",
    "duplicate-handle.yaml",
    "too-many-users.yaml",
    "bad-interval.yaml",
    "bad-access-level.yaml",
    "bad-expires-at.yaml",
    "unknown-field.yaml",
    "empty-gitlab-members.yaml",
}


def test_bad_manifests_cover_the_cases() -> None:
    assert {path.name for path in BAD_MANIFESTS} >= REQUIRED_BAD_CASES
    (doc,) = load_yaml_documents(crdv.BAD_MANIFESTS_DIR / "too-many-users.yaml")
    assert len(doc["spec"]["slackUsergroups"]["usergroups"][0]["users"]) == 1001


@pytest.mark.parametrize("path", BAD_MANIFESTS, ids=lambda path: path.name)
def test_bad_manifest_is_rejected_by_the_crd(path: Path) -> None:
    expectations = expect_comments(path)
    assert expectations, f"{path.name} has no '# expect:' line"
    (doc,) = load_yaml_documents(path)
    for engine in crdv.CEL_ENGINES:
        errors = crdv.validate_reconcile(doc, CRD, engine=engine)
        texts = [str(error) for error in errors]
        for expected in expectations:
            assert any(expected in text for text in texts), f"{expected!r} not in:\n{_errors_text(errors)}"
        # Nothing else is wrong with the manifest, so it tests what it says it tests.
        unexplained = [text for text in texts if not any(expected in text for expected in expectations)]
        assert unexplained == []


@pytest.mark.parametrize("path", BAD_MANIFESTS, ids=lambda path: path.name)
def test_bad_manifest_is_rejected_by_the_model(path: Path) -> None:
    (doc,) = load_yaml_documents(path)
    with pytest.raises(ValidationError):
        ReconcileSpec.model_validate(doc["spec"])


# --- (d) the CEL rules ---


def example_spec(integration: Integration[Any]) -> dict[str, Any]:
    """A valid spec running `integration` with its example block."""
    spec: dict[str, Any] = integration.manifest("example", "default", integration.example, "bot")["spec"]
    return spec


def required(integration: Integration[Any]) -> str:
    return f"spec.{integration.spec_field} is required when integration is {integration.name}"


def forbidden(integration: Integration[Any]) -> str:
    return f"spec.{integration.spec_field} is only allowed when integration is {integration.name}; remove it"


SLACK_SPEC: dict[str, Any] = {
    "integration": "slack-usergroups",
    "credentials": {"secretRef": {"name": "slack-bot"}},
    "slackUsergroups": {"usergroups": [{"handle": "sre", "name": "SRE", "users": ["a@example.com"]}]},
}
GITLAB_SPEC: dict[str, Any] = {
    "integration": "gitlab-members",
    "credentials": {"secretRef": {"name": "gitlab-bot"}},
    "gitlabMembers": {
        "url": "https://gitlab.example.com",
        "groups": [{"path": "acme", "members": [{"username": "alice", "accessLevel": "owner"}]}],
    },
}
GITLAB_BLOCK = GITLAB_SPEC["gitlabMembers"]


def _spec(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def _gitlab(**block: Any) -> dict[str, Any]:
    return _spec(GITLAB_SPEC, gitlabMembers={"url": "https://gitlab.example.com", **block})


def _block_cases() -> list[tuple[str, dict[str, Any], set[str]]]:
    """For every registered integration: its example passes; without its block, with every other
    block, or with another's block only, the generated required/forbidden rules fail."""
    cases: list[tuple[str, dict[str, Any], set[str]]] = []
    blocks = {i.spec_field: dict(i.example) for i in INTEGRATIONS.values()}
    for name, integration in INTEGRATIONS.items():
        own = example_spec(integration)
        others = [i for i in INTEGRATIONS.values() if i is not integration]
        cases.append((f"{name} ok", own, set()))
        cases.append(
            (
                f"{name} without its block",
                _spec(own, **{integration.spec_field: None}),
                {required(integration)},
            )
        )
        cases.append((f"{name} with every block", {**own, **blocks}, {forbidden(i) for i in others}))
        for other in others:
            cases.append(
                (
                    f"{name} with the {other.name} block only",
                    _spec(own, **{integration.spec_field: None, other.spec_field: blocks[other.spec_field]}),
                    {required(integration), forbidden(other)},
                )
            )
    any_spec = example_spec(next(iter(INTEGRATIONS.values())))
    no_block = {k: v for k, v in any_spec.items() if k not in blocks}
    cases.append(
        ("unknown integration, no block (the enum rejects it)", {**no_block, "integration": "jira"}, set())
    )
    cases.append(
        (
            "unknown integration with every block",
            {**no_block, **blocks, "integration": "jira"},
            {forbidden(i) for i in INTEGRATIONS.values()},
        )
    )
    return cases


CEL_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    *_block_cases(),
    ("gitlab, no groups or projects", _gitlab(), {RULE_GITLAB_NOT_EMPTY}),
    ("gitlab, empty groups and projects", _gitlab(groups=[], projects=[]), {RULE_GITLAB_NOT_EMPTY}),
    ("gitlab, projects only", _gitlab(projects=[{"path": "acme/api"}]), set()),
    ("gitlab, empty groups and a project", _gitlab(groups=[], projects=[{"path": "acme/api"}]), set()),
    ("interval 10m", _spec(SLACK_SPEC, interval="10m"), set()),
    ("interval 0.5s", _spec(SLACK_SPEC, interval="0.5s"), set()),
    ("interval 1h0m", _spec(SLACK_SPEC, interval="1h0m"), set()),
    ("interval 0s", _spec(SLACK_SPEC, interval="0s"), {RULE_INTERVAL_POSITIVE}),
    ("interval 0h0m0.000s", _spec(SLACK_SPEC, interval="0h0m0.000s"), {RULE_INTERVAL_POSITIVE}),
    ("interval 8760h", _spec(SLACK_SPEC, interval="8760h"), set()),
    ("interval 8760h1s", _spec(SLACK_SPEC, interval="8760h1s"), {RULE_INTERVAL_MAX}),
    ("interval 99999999h", _spec(SLACK_SPEC, interval="99999999h"), {RULE_INTERVAL_MAX}),
    ("interval overflowing", _spec(SLACK_SPEC, interval="99999999999999h"), {RULE_INTERVAL_MAX}),
]


def test_cel_rules_are_the_expected_ones_and_cheap() -> None:
    rules = crdv.cel_rules(SCHEMA)
    assert {(rule.schema_path, rule.message) for rule in rules} == {
        *(("spec", required(i)) for i in INTEGRATIONS.values()),
        *(("spec", forbidden(i)) for i in INTEGRATIONS.values()),
        ("spec.gitlabMembers", RULE_GITLAB_NOT_EMPTY),
        ("spec.interval", RULE_INTERVAL_POSITIVE),
        ("spec.interval", RULE_INTERVAL_MAX),
    }
    schemas = dict(crdv.iter_schemas(SCHEMA))
    for rule in rules:
        # Cheap for the API server's cost estimate: no rule inside a list, no comprehension over lists.
        assert "[]" not in rule.schema_path, rule
        assert not re.search(r"\.(all|exists|exists_one|map|filter)\(", rule.rule), rule
        # Type-checks like the API server would: every `self.x` is a declared property.
        declared = schemas[rule.schema_path].get("properties", {})
        for field in re.findall(r"\bself\.(\w+)\b(?!\s*\()", rule.rule):
            assert field in declared, f"{rule.rule}: {field} is not declared at {rule.schema_path}"


@pytest.mark.parametrize("rule", crdv.cel_rules(SCHEMA), ids=lambda rule: rule.message)
@pytest.mark.parametrize("engine", crdv.CEL_ENGINES)
def test_cel_rule_compiles(rule: crdv.CelRule, engine: str) -> None:
    sample: dict[str, Any] = {
        "spec": SLACK_SPEC,
        "spec.interval": "10m",
        **{f"spec.{i.spec_field}": dict(i.example) for i in INTEGRATIONS.values()},
    }[rule.schema_path]
    assert crdv.evaluate_cel(rule.rule, sample, engine) is True


@pytest.mark.parametrize(("name", "spec", "failing"), CEL_CASES, ids=[case[0] for case in CEL_CASES])
@pytest.mark.parametrize("engine", crdv.CEL_ENGINES)
def test_cel_rules_fail_exactly_where_expected(
    name: str, spec: dict[str, Any], failing: set[str], engine: str
) -> None:
    errors = crdv.cel_errors(crdv.apply_defaults(spec, SPEC_SCHEMA), SPEC_SCHEMA, "spec", engine)
    assert {error.rule for error in errors} == {
        rule.rule for rule in crdv.cel_rules(SCHEMA) if rule.message in failing
    }
    assert all(any(message in str(error) for message in failing) for error in errors), _errors_text(errors)


def test_every_cel_rule_is_exercised() -> None:
    exercised = set().union(*(failing for _, _, failing in CEL_CASES))
    assert {rule.message for rule in crdv.cel_rules(SCHEMA)} == exercised


@pytest.mark.parametrize(
    ("spec", "path", "kind"),
    [
        (_spec(SLACK_SPEC, slackUsergroups=None), "spec.slackUsergroups", "Required value"),
        (_spec(SLACK_SPEC, gitlabMembers=GITLAB_BLOCK), "spec.gitlabMembers", "Forbidden"),
        (_gitlab(), "spec.gitlabMembers", "Required value"),
        (_spec(SLACK_SPEC, interval="0s"), "spec.interval", "Invalid value"),
    ],
)
def test_cel_errors_name_the_field(spec: dict[str, Any], path: str, kind: str) -> None:
    (error,) = crdv.cel_errors(spec, SPEC_SCHEMA, "spec")
    assert (error.path, error.kind, error.rule is not None) == (path, kind, True)


@pytest.mark.parametrize(
    "interval",
    [
        *["0s", "0ms", "0.0h", "000m", "0m0s", "1ms", "0.001s", "0.5s", "10m", "1h30m", "0h1m", "90s"],
        *["8760h", "8759h60m", "8760h0.001s", "525600m", "525601m", "999999s", "9999999ms", "1000000h"],
        *["99999999h", "99999999999999h", "2562048h", "1h" * 20],
    ],
)
def test_interval_rules_agree_with_the_model(interval: str) -> None:
    rules = [rule for rule in crdv.cel_rules(SCHEMA) if rule.schema_path == "spec.interval"]
    assert re.fullmatch(DURATION_PATTERN, interval)
    try:
        accepted = parse_duration(interval).total_seconds() > 0
    except ValueError:  # too long: a message naming the limit, never an OverflowError
        accepted = False
    for engine in crdv.CEL_ENGINES:
        assert all(crdv.evaluate_cel(rule.rule, interval, engine) for rule in rules) is accepted, engine
    model_accepts = True
    try:
        ReconcileSpec.model_validate(_spec(SLACK_SPEC, interval=interval))
    except ValidationError as exc:
        model_accepts = False
        assert exc.errors()[0]["loc"] == ("interval",)
    assert model_accepts is accepted


# --- (e) the status ---

SAMPLE_STATUS: dict[str, Any] = {
    "observedGeneration": 4,
    "taskId": "5f0c2a9e6b4d4f0e9a7c1d2e3f405162",
    "lastRunTime": "2026-11-23T08:00:00Z",
    "lastSuccessTime": "2026-11-23T08:00:00Z",
    "lastHandledRequestedAt": "2026-11-23T07:59:30Z",
    "handledEssence": '{"spec":{"sha256":"0c2a"}}',
    "summary": {"planned": 3, "applied": 3, "failed": 0},
    "actions": [
        {"type": "add_users", "target": "sre-oncall", "detail": "bob@example.com"},
        {"type": "create_usergroup", "target": "sre-leads", "detail": "name 'SRE Leads', channels none"},
        {"type": "remove_users", "target": "sre-oncall", "detail": "eve@example.com"},
    ],
    "claims": [
        {"target": "slack:T0123:usergroup:sre-oncall", "owner": "team-sre/sre-usergroups", "held": True},
        {"target": "slack:T0123:usergroup:sre-leads", "owner": "team-other/leads", "held": False},
    ],
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Succeeded",
            "message": "3 actions applied",
            "observedGeneration": 4,
            "lastTransitionTime": "2026-11-23T08:00:00Z",
        },
        {
            "type": "Reconciling",
            "status": "False",
            "reason": "Succeeded",
            "message": "",
            "observedGeneration": 4,
            "lastTransitionTime": "2026-11-23T08:00:00Z",
        },
        {
            "type": "Stalled",
            "status": "False",
            "reason": "Succeeded",
            "message": "",
            "observedGeneration": 4,
            "lastTransitionTime": "2026-11-23T07:00:00+00:00",
        },
    ],
}


def test_status_schema_lists_the_contract_fields() -> None:
    props = STATUS_SCHEMA["properties"]
    assert set(props) == set(SAMPLE_STATUS)
    assert set(props["summary"]["properties"]) == {"planned", "applied", "failed"}
    assert set(props["actions"]["items"]["properties"]) == {"type", "target", "detail"}
    assert set(props["claims"]["items"]["properties"]) == {"target", "owner", "held"}
    condition = props["conditions"]["items"]
    assert set(condition["properties"]) == {
        "type",
        "status",
        "observedGeneration",
        "lastTransitionTime",
        "reason",
        "message",
    }
    assert sorted(condition["required"]) == sorted(
        ["type", "status", "lastTransitionTime", "reason", "message"]
    )
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["observedGeneration"]["format"] == "int64"
    assert props["lastRunTime"]["format"] == props["lastSuccessTime"]["format"] == "date-time"
    assert "x-kubernetes-preserve-unknown-fields" not in STATUS_SCHEMA


def test_sample_status_is_valid_and_nothing_is_pruned() -> None:
    assert crdv.validate_status(SAMPLE_STATUS, CRD) == []  # an unknown (pruned) field would be an error
    ReconcileStatus.model_validate(SAMPLE_STATUS)


def test_ready_unknown_on_a_new_generation_is_valid() -> None:
    status = {
        "observedGeneration": 5,
        "conditions": [
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "Progressing",
                "message": "generation 5 is being reconciled",
                "observedGeneration": 5,
                "lastTransitionTime": "2026-11-23T09:00:00Z",
            },
            {
                "type": "Reconciling",
                "status": "True",
                "reason": "Progressing",
                "message": "",
                "observedGeneration": 5,
                "lastTransitionTime": "2026-11-23T09:00:00Z",
            },
        ],
    }
    assert crdv.validate_status(status, CRD) == []


def test_fields_missing_from_the_status_schema_are_reported_as_pruned() -> None:
    status = copy.deepcopy(SAMPLE_STATUS)
    status["phase"] = "Ready"
    status["summary"]["skipped"] = 1
    status["actions"][0]["usergroupId"] = "S0123"
    status["conditions"][0]["severity"] = "Info"
    assert {str(error) for error in crdv.validate_status(status, CRD)} == {
        'unknown field "status.phase"',
        'unknown field "status.summary.skipped"',
        'unknown field "status.actions[0].usergroupId"',
        'unknown field "status.conditions[0].severity"',
    }


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    status = copy.deepcopy(SAMPLE_STATUS)
    change(status)
    return status


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            _with(lambda s: s["conditions"][0].update(status="Maybe")),
            'status.conditions[0].status: Unsupported value: "Maybe"',
        ),
        (_with(lambda s: s["conditions"][1].pop("reason")), "status.conditions[1].reason: Required value"),
        (_with(lambda s: s["conditions"][1].update(reason="")), "status.conditions[1].reason: Invalid value"),
        (_with(lambda s: s["conditions"][2].update(type="Ready")), "status.conditions[2]: Duplicate value"),
        (_with(lambda s: s.update(lastRunTime="yesterday")), "must be of type date-time"),
        (_with(lambda s: s.update(actions=s["actions"] * 17)), "status.actions: Too many: 51"),
        (_with(lambda s: s["summary"].update(planned="3")), "status.summary.planned: Invalid value"),
    ],
)
def test_bad_status_is_rejected(status: dict[str, Any], expected: str) -> None:
    errors = crdv.validate_status(status, CRD)
    assert any(expected in str(error) for error in errors), _errors_text(errors)
