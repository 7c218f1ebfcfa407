"""What the tests add to reconciler/crd.py to prove the generated CRD: its CEL rules, evaluated with real
CEL implementations (`common-expression-language`, import name `cel`, and `cel-python`, import name
`celpy`), the API server's defaulting, and a check that the schema is structural.

`validate_reconcile()` is `kubectl apply`'s create path: the runtime's one JSON-Schema validation
(unknown fields, the OpenAPI schema, list types), then every CEL rule on the defaulted object.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import crd as runtime
from reconciler.crd import FieldError, child_path, drop_nulls, go_quote

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "deploy" / "crds" / runtime.CRD_FILE
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


def load_crd(path: Path | str = CRD_PATH) -> dict[str, Any]:
    return runtime.load_crd(path)


def openapi_schema(crd: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return runtime.openapi_schema(crd if crd is not None else load_crd())


def expect_comments(path: Path | str) -> list[str]:
    """The `# expect: <text>` lines of a manifest: substrings its validation errors must contain."""
    text = Path(path).read_text(encoding="utf-8")
    return [match.strip() for match in re.findall(r"^#\s*expect:\s*(.+)$", text, flags=re.MULTILINE)]


def iter_schemas(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (path, subschema) pair of a structural schema; list items appear as `path[]`."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schemas(sub, child_path(path, name))
    if isinstance(schema.get("items"), Mapping):
        yield from iter_schemas(schema["items"], f"{path}[]")


def walk(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[Any, Mapping[str, Any], str]]:
    """(value, schema, path) of every node of `value` that `schema` declares, parents first."""
    yield value, schema, path
    if isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}) and (path or key != "metadata"):
                yield from walk(item, schema["properties"][key], child_path(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from walk(item, schema["items"], child_path(path, index))


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of `value` with `null`s dropped and `default`s filled in, as the API server stores it."""
    value = copy.deepcopy(drop_nulls(value))
    for node, node_schema, _ in walk(value, schema, ""):
        if isinstance(node, dict):
            for key, sub in node_schema.get("properties", {}).items():
                if key not in node and "default" in sub:
                    node[key] = copy.deepcopy(sub["default"])
    return value


# --- structural schemas ---


def structural_problems(schema: Mapping[str, Any], path: str = "<root>") -> list[str]:
    """Why `schema` is not a structural schema the API server accepts (the rules this CRD could break:
    types, `$ref`, junctors, list types, defaults, CEL rule fields); empty when it is."""
    problems: list[str] = []
    type_ = schema.get("type")
    if type_ not in SCALAR_TYPES | {"object", "array"}:
        problems.append(f"{path}: type is missing or invalid")
    if path == "<root>" and type_ != "object":
        problems.append(f"{path}: the root schema must be of type object")
    if "$ref" in schema or "additionalProperties" in schema:
        problems.append(f"{path}: $ref and additionalProperties are not allowed here")
    if type_ == "array" and not isinstance(schema.get("items"), Mapping):
        problems.append(f"{path}: an array needs items with exactly one schema")
    if type_ == "object" and "properties" not in schema and not path.endswith("metadata"):
        problems.append(f"{path}: an object without properties would have all its fields pruned")
    for junctor in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(junctor, [])):
            problems += [
                f"{path}: {junctor}[{index}] must not set {key}" for key in sub if key in ("type", "default")
            ]
    items = schema.get("items", {})
    if schema.get("x-kubernetes-list-type") == "set" and items.get("type") not in SCALAR_TYPES:
        problems.append(f"{path}: x-kubernetes-list-type: set needs scalar items")
    for key in (
        schema.get("x-kubernetes-list-map-keys", []) if schema.get("x-kubernetes-list-type") == "map" else []
    ):
        if key not in items.get("required", []):
            problems.append(f"{path}: list map key {key!r} must be required")
    if "default" in schema:
        problems += [
            f"{path}: default is invalid: {e}" for e in runtime.schema_errors(schema["default"], schema)
        ]
    for rule in schema.get("x-kubernetes-validations", []):
        if "\n" in rule.get("message", "") or rule.get("reason", "FieldValueInvalid") not in CEL_REASONS:
            problems.append(
                f"{path}: {rule['rule']}: message must be one line, reason one of {list(CEL_REASONS)}"
            )
        if rule.get("fieldPath", ".")[1:] not in ("", *schema.get("properties", {})):
            problems.append(
                f"{path}: fieldPath {rule['fieldPath']!r} does not name a property of this schema"
            )
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(items, Mapping) and items:
        problems += structural_problems(items, f"{path}[]")
    return problems


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
            sub_path,
            entry["rule"],
            entry["message"],
            entry.get("reason", "FieldValueInvalid"),
            entry.get("fieldPath", ""),
        )
        for sub_path, sub in iter_schemas(schema, path)
        for entry in sub.get("x-kubernetes-validations", [])
    ]


@functools.cache
def _compile(rule: str, engine: str) -> Any:
    if engine == "cel":
        import cel

        return cel.compile(rule)
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def evaluate_cel(rule: str, self_value: Any, engine: str = "cel") -> bool:
    """Evaluate one rule with `self` bound to `self_value`, with `cel` (common-expression-language, in
    Rust) or `celpy` (cel-python). Raises when the rule cannot be evaluated."""
    if engine not in CEL_ENGINES:
        raise ValueError(f"unknown CEL engine {engine!r}; choose one of {CEL_ENGINES}")
    if engine == "cel":
        result = _compile(rule, engine).execute({"self": self_value})
    else:
        import celpy

        result = _compile(rule, engine).evaluate({"self": celpy.json_to_cel(self_value)})
        if isinstance(result, Exception):
            raise result
    if not isinstance(result, bool) and type(result).__name__ != "BoolType":
        raise TypeError(f"rule {rule!r} evaluated to {result!r}, not to a bool")
    return bool(result)


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str}


def cel_errors(
    value: Any, schema: Mapping[str, Any], path: str = "", engine: str = "cel"
) -> list[FieldError]:
    """Evaluate every `x-kubernetes-validations` rule on every node of `value` it applies to."""
    errors: list[FieldError] = []
    for node, node_schema, node_path in walk(value, schema, path):
        if not isinstance(node, _JSON_TYPES.get(node_schema.get("type", ""), object)):
            continue  # a wrongly typed value already has a schema error; the API server skips its rules
        for entry in node_schema.get("x-kubernetes-validations", []):
            rule, where = entry["rule"], node_path + entry.get("fieldPath", "")
            try:
                ok = evaluate_cel(rule, node, engine)
            except Exception as exc:  # the API server reports evaluation errors as invalid values
                errors.append(FieldError(where, "Invalid value", f"rule {rule!r} failed: {exc}", "cel", rule))
                continue
            if not ok:
                kind = CEL_REASONS[entry.get("reason", "FieldValueInvalid")]
                detail = (
                    f"{go_quote(node)}: {entry['message']}" if kind == "Invalid value" else entry["message"]
                )
                errors.append(FieldError(where, kind, detail, "cel", rule))
    return errors


# --- whole objects ---


def validate_reconcile(
    doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None, engine: str = "cel"
) -> list[FieldError]:
    """Validate a Reconcile manifest as `kubectl apply` against a cluster with this CRD would: the
    runtime's validation, then the CEL rules on the defaulted object. Empty: the API server accepts it."""
    crd = crd if crd is not None else load_crd()
    body = runtime.manifest_body(doc)
    errors = runtime.validate_manifest(body, crd)
    return errors + cel_errors(apply_defaults(body, openapi_schema(crd)), openapi_schema(crd), "", engine)


def validate_status(status: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Validate a status as the operator writes it through the status subresource."""
    return runtime.schema_errors(status, openapi_schema(crd)["properties"]["status"], "status")
