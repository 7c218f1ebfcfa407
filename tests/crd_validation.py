"""Validate Reconcile manifests against the CRD the way the Kubernetes API server does, without a cluster.

The API server handles a create/update of a custom resource in this order, and so does
`validate_reconcile()`:

1. strict field validation (`kubectl apply`'s default): fields the structural schema does not declare
   are errors (`unknown field "spec.foo"`); without it they would be pruned silently;
2. `null` values of non-nullable fields are dropped, then `default`s are applied;
3. the OpenAPI v3 schema (checked here with `jsonschema`, `x-kubernetes-*` extensions removed);
4. `x-kubernetes-list-type` `map`/`set` uniqueness;
5. the CEL rules in `x-kubernetes-validations`, evaluated with a real CEL implementation
   (`common-expression-language`, import name `cel`; `cel-python`, import name `celpy`, on request).

Steps 1-4 (and the apiVersion/kind/metadata checks) are the runtime validation in `reconciler/crd.py`,
which `reconciler plan`/`apply` use; this module re-exports them and adds what only the tests need:
the CEL rules (at run time the pydantic models enforce the same rules), `structural_problems()` (is the
schema structural?) and the CRD from `deploy/crds/` rather than the package's copy by default.

Errors are `FieldError`s whose text follows the API server's wording (`spec.credentials: Required
value`, `spec.integration: Unsupported value: ...`), so that expectations written against a real cluster
and against this module look alike. `pruned_fields()` lists what a structural schema would drop (e.g. a
status field the CRD forgot).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from reconciler import crd as runtime
from reconciler.crd import (
    FORMAT_CHECKER,
    FieldError,
    KubeYamlLoader,
    apply_defaults,
    crd_version,
    list_type_errors,
    load_yaml_documents,
    prune,
    pruned_fields,
    schema_errors,
    to_json_schema,
)
from reconciler.crd import child_path as _child
from reconciler.crd import go_quote as _go_quote
from reconciler.crd import walk as _walk

__all__ = [
    "BAD_MANIFESTS_DIR",
    "CEL_ENGINES",
    "CEL_REASONS",
    "CRD_PATH",
    "EXAMPLES_DIR",
    "FORMAT_CHECKER",
    "SCALAR_TYPES",
    "CelRule",
    "FieldError",
    "KubeYamlLoader",
    "apply_defaults",
    "cel_errors",
    "cel_rules",
    "crd_version",
    "evaluate_cel",
    "expect_comments",
    "is_valid",
    "iter_schemas",
    "list_type_errors",
    "load_crd",
    "load_yaml_documents",
    "openapi_schema",
    "prune",
    "pruned_fields",
    "schema_errors",
    "structural_problems",
    "to_json_schema",
    "validate_object",
    "validate_reconcile",
    "validate_status",
]

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "deploy" / "crds" / "reconciler.dev_reconciles.yaml"
EXAMPLES_DIR = ROOT / "examples"
BAD_MANIFESTS_DIR = ROOT / "tests" / "manifests" / "bad"

SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
CEL_ENGINES = ("cel", "celpy")
CEL_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
}


# --- loading (the deploy/crds/ CRD by default) ---


def load_crd(path: Path | str = CRD_PATH) -> dict[str, Any]:
    """The CustomResourceDefinition (a fresh copy, so callers may modify it)."""
    return runtime.load_crd(path)


def openapi_schema(crd: Mapping[str, Any] | None = None, version: str = "v1alpha1") -> dict[str, Any]:
    """The version's `openAPIV3Schema`."""
    return runtime.openapi_schema(crd if crd is not None else load_crd(), version)


def expect_comments(path: Path | str) -> list[str]:
    """The `# expect: <text>` lines of a manifest: substrings its validation errors must contain."""
    text = Path(path).read_text(encoding="utf-8")
    return [match.strip() for match in re.findall(r"^#\s*expect:\s*(.+)$", text, flags=re.MULTILINE)]


# --- structural schemas ---

_FORBIDDEN_KEYWORDS = ("$ref", "definitions", "dependencies", "patternProperties", "additionalItems", "id")
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_NOT_IN_JUNCTORS = ("type", "default", "additionalProperties", "nullable", "description", "title")


def structural_problems(schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Why `schema` (an `openAPIV3Schema`) is not a structural schema; empty when it is.

    Checks the rules of
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
    #specifying-a-structural-schema plus the constraints on list types, defaults and CEL rules that the
    API server checks when the CRD is created.
    """
    problems: list[str] = []
    _structural(schema, path or "<root>", problems, root=not path)
    return problems


def _structural(schema: Mapping[str, Any], path: str, problems: list[str], root: bool = False) -> None:
    def problem(text: str) -> None:
        problems.append(f"{path}: {text}")

    type_ = schema.get("type")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if not type_ and not int_or_string and not preserve:
        problem("type is missing")
    elif type_ and (not isinstance(type_, str) or type_ not in SCALAR_TYPES | {"object", "array"}):
        problem(f"invalid type {type_!r}")
    if root and type_ != "object":
        problem("the root schema must be of type object")
    for keyword in _FORBIDDEN_KEYWORDS:
        if keyword in schema:
            problem(f"{keyword} is not allowed")
    if schema.get("uniqueItems") is True:
        problem("uniqueItems cannot be true (use x-kubernetes-list-type: set or map)")
    if "properties" in schema and "additionalProperties" in schema:
        problem("properties and additionalProperties are mutually exclusive")
    if schema.get("additionalProperties") is False:
        problem("additionalProperties: false is not allowed (unknown fields are pruned anyway)")
    if "properties" in schema and type_ != "object":
        problem("properties on a schema that is not of type object")
    if "items" in schema and type_ != "array":
        problem("items on a schema that is not of type array")
    if type_ == "array" and not isinstance(schema.get("items"), Mapping):
        problem("an array needs items with exactly one schema")
    if (
        type_ == "object"
        and not preserve
        and "properties" not in schema
        and "additionalProperties" not in schema
        and not path.endswith(".metadata")
    ):
        problem("an object without properties or additionalProperties would have all its fields pruned")
    for junctor in _JUNCTORS:
        subschemas = schema.get(junctor, [])
        for index, sub in enumerate(subschemas if isinstance(subschemas, list) else [subschemas]):
            for keyword in _NOT_IN_JUNCTORS:
                if keyword in sub:
                    problem(f"{junctor}[{index}] must not set {keyword}")
    _structural_list_type(schema, problem)
    _structural_defaults(schema, problem)
    _structural_validations(schema, problem)

    properties = schema.get("properties", {})
    if root and "metadata" in properties:
        allowed = {"name", "generateName"}
        extra = set(properties["metadata"].get("properties", {})) - allowed
        if extra or set(properties["metadata"]) - {"type", "properties", "description"}:
            problem("metadata may only restrict name and generateName")
    for name, sub in properties.items():
        _structural(sub, f"{path}.{name}" if not root else f".{name}", problems)
    if isinstance(schema.get("additionalProperties"), Mapping):
        _structural(schema["additionalProperties"], f"{path}[*]", problems)
    if isinstance(schema.get("items"), Mapping):
        _structural(schema["items"], f"{path}[]", problems)


def _structural_list_type(schema: Mapping[str, Any], problem: Any) -> None:
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys")
    if list_type is None:
        if keys is not None:
            problem("x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")
        return
    if schema.get("type") != "array":
        problem("x-kubernetes-list-type on a schema that is not an array")
        return
    if list_type not in ("atomic", "set", "map"):
        problem(f"invalid x-kubernetes-list-type {list_type!r}")
    items = schema.get("items", {})
    if list_type == "set" and items.get("type") not in SCALAR_TYPES:
        problem("x-kubernetes-list-type: set needs scalar items")
    if list_type == "map":
        if items.get("type") != "object":
            problem("x-kubernetes-list-type: map needs object items")
        if not keys:
            problem("x-kubernetes-list-type: map needs x-kubernetes-list-map-keys")
        for key in keys or []:
            key_schema = items.get("properties", {}).get(key)
            if key_schema is None:
                problem(f"list map key {key!r} is not a property of the items")
            elif key_schema.get("type") not in SCALAR_TYPES:
                problem(f"list map key {key!r} must be a scalar")
            elif key not in items.get("required", []) and "default" not in key_schema:
                problem(f"list map key {key!r} must be required or have a default")
    elif keys is not None:
        problem("x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")


def _structural_defaults(schema: Mapping[str, Any], problem: Any) -> None:
    if "default" not in schema:
        return
    default = schema["default"]
    validator = jsonschema.Draft202012Validator(to_json_schema(schema), format_checker=FORMAT_CHECKER)
    for error in validator.iter_errors(default):
        problem(f"default {default!r} is invalid: {error.message}")
    for pruned in pruned_fields(default, schema, "<default>"):
        problem(f"default sets {pruned}, which would be pruned")


def _structural_validations(schema: Mapping[str, Any], problem: Any) -> None:
    for index, rule in enumerate(schema.get("x-kubernetes-validations", [])):
        where = f"x-kubernetes-validations[{index}]"
        if not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
            problem(f"{where}: rule is required")
        message = rule.get("message")
        if message is not None and (not message.strip() or "\n" in message or len(message) > 2048):
            problem(f"{where}: message must be non-empty, one line, at most 2048 characters")
        if "reason" in rule and rule["reason"] not in CEL_REASONS:
            problem(f"{where}: reason must be one of {', '.join(CEL_REASONS)}")
        field_path = rule.get("fieldPath")
        if field_path is not None:
            parts = field_path.split(".")
            target: Mapping[str, Any] | None = schema if parts[0] == "" and len(parts) > 1 else None
            for part in parts[1:]:
                target = target.get("properties", {}).get(part) if target is not None else None
            if target is None:
                problem(f"{where}: fieldPath {field_path!r} does not name a property of this schema")


def iter_schemas(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (path, subschema) pair of a structural schema; list items appear as `path[]`."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schemas(sub, _child(path, name))
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from iter_schemas(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), Mapping):
        yield from iter_schemas(schema["items"], f"{path}[]")


# --- CEL ---


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry and where it sits in the schema (`spec.gitlabMembers`)."""

    schema_path: str
    rule: str
    message: str
    reason: str = "FieldValueInvalid"
    field_path: str = ""


def cel_rules(schema: Mapping[str, Any], path: str = "") -> list[CelRule]:
    """Every CEL rule of the schema, outermost first."""
    return [
        CelRule(
            schema_path=sub_path,
            rule=entry["rule"],
            message=entry.get("message") or f"failed rule: {entry['rule']}",
            reason=entry.get("reason", "FieldValueInvalid"),
            field_path=entry.get("fieldPath", ""),
        )
        for sub_path, sub in iter_schemas(schema, path)
        for entry in sub.get("x-kubernetes-validations", [])
    ]


@functools.cache
def _compile_cel(rule: str) -> Any:
    import cel

    return cel.compile(rule)


@functools.cache
def _compile_celpy(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def evaluate_cel(rule: str, self_value: Any, engine: str = "cel") -> bool:
    """Evaluate one rule with `self` bound to `self_value`. `engine` is `cel` (common-expression-language,
    a Rust implementation) or `celpy` (cel-python). Raises when the rule cannot be evaluated."""
    if engine == "cel":
        result = _compile_cel(rule).execute({"self": self_value})
    elif engine == "celpy":
        import celpy

        result = _compile_celpy(rule).evaluate({"self": celpy.json_to_cel(self_value)})
        if isinstance(result, Exception):
            raise result
    else:
        raise ValueError(f"unknown CEL engine {engine!r}; choose one of {CEL_ENGINES}")
    if not isinstance(result, bool) and type(result).__name__ != "BoolType":
        raise TypeError(f"rule {rule!r} evaluated to {result!r}, not to a bool")
    return bool(result)


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def cel_errors(
    value: Any, schema: Mapping[str, Any], path: str = "", engine: str = "cel"
) -> list[FieldError]:
    """Evaluate every `x-kubernetes-validations` rule on every node of `value` it applies to."""
    errors: list[FieldError] = []
    for node, node_schema, node_path in _walk(value, schema, path):
        rules = node_schema.get("x-kubernetes-validations", [])
        expected = _JSON_TYPES.get(node_schema.get("type", ""), object)
        if not rules or not isinstance(node, expected):
            continue  # a wrongly typed value already has a schema error; the API server skips its rules
        for entry in rules:
            rule = entry["rule"]
            reason = entry.get("reason", "FieldValueInvalid")
            where = node_path + entry.get("fieldPath", "")
            message = entry.get("message") or f"failed rule: {rule}"
            try:
                ok = evaluate_cel(rule, node, engine)
            except Exception as exc:  # the API server reports evaluation errors as invalid values
                errors.append(FieldError(where, "Invalid value", f"rule {rule!r} failed: {exc}", "cel", rule))
                continue
            if not ok:
                kind = CEL_REASONS.get(reason, "Invalid value")
                detail = f"{_go_quote(node)}: {message}" if kind == "Invalid value" else message
                errors.append(FieldError(where, kind, detail, "cel", rule))
    return errors


# --- whole objects ---


def validate_object(
    obj: Mapping[str, Any], schema: Mapping[str, Any], path: str = "", engine: str = "cel"
) -> list[FieldError]:
    """All the API server's checks of `obj` against a structural schema: unknown fields (strict field
    validation), then, on the pruned and defaulted object, the OpenAPI schema, list types and CEL."""
    errors = runtime.validate_object(obj, schema, path)
    errors += cel_errors(runtime.defaulted(obj, schema, path), schema, path, engine)
    return list(dict.fromkeys(errors))


def validate_reconcile(
    doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None, engine: str = "cel"
) -> list[FieldError]:
    """Validate a Reconcile manifest as `kubectl apply` against a cluster with this CRD would.

    Returns the errors; an empty list means the API server would accept the object. (Only the `spec` part
    matters on create: with the status subresource, the API server ignores `status` there.)
    """
    crd = crd if crd is not None else load_crd()
    errors = runtime.header_errors(doc, crd)
    version = str(doc.get("apiVersion", "")).rpartition("/")[2]
    try:
        schema = openapi_schema(crd, version)
    except KeyError:
        return errors
    return errors + validate_object(runtime.manifest_body(doc), schema, "", engine)


def validate_status(status: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Validate a status as the operator writes it through the status subresource."""
    schema = openapi_schema(crd)["properties"]["status"]
    return validate_object(status, schema, "status")


def is_valid(doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> bool:
    return not validate_reconcile(doc, crd)
