"""What the tests add to reconciler/crd.py to prove the generated CRD: its CEL rules, evaluated with real
CEL implementations (`common-expression-language`, import name `cel`, and `cel-python`, import name
`celpy`), and the API server's defaulting.

`validate_reconcile()` is `kubectl apply`'s create path: the runtime's one JSON-Schema validation
(unknown fields, the OpenAPI schema, list types), then every CEL rule on the defaulted object.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from reconciler import crd as runtime
from reconciler.crd import FieldError, child_path, drop_nulls, go_quote

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "deploy" / "crds" / runtime.CRD_FILE
EXAMPLES_DIR = ROOT / "examples"
BAD_MANIFESTS_DIR = ROOT / "tests" / "manifests" / "bad"

CEL_ENGINES = ("cel", "celpy")
CEL_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
}


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


# --- CEL ---


class CelRule(NamedTuple):
    """One `x-kubernetes-validations` entry and where it sits in the schema (`spec.gitlabMembers`)."""

    schema_path: str
    rule: str
    message: str


def cel_rules(schema: Mapping[str, Any], path: str = "") -> list[CelRule]:
    """Every CEL rule of the schema, outermost first."""
    return [
        CelRule(sub_path, entry["rule"], entry["message"])
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
    if engine == "cel":
        result = _compile(rule, engine).execute({"self": self_value})
    elif engine == "celpy":
        import celpy

        result = _compile(rule, engine).evaluate({"self": celpy.json_to_cel(self_value)})
    else:
        raise ValueError(f"unknown CEL engine {engine!r}; choose one of {CEL_ENGINES}")
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
                errors.append(FieldError(where, "Invalid value", f"rule {rule!r} failed: {exc}", rule))
                continue
            if not ok:
                kind = CEL_REASONS[entry.get("reason", "FieldValueInvalid")]
                detail = f"{go_quote(node)}: " if kind == "Invalid value" else ""
                errors.append(FieldError(where, kind, detail + entry["message"], rule))
    return errors


# --- whole objects ---


def validate_reconcile(
    doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None, engine: str = "cel"
) -> list[FieldError]:
    """Validate a Reconcile manifest as `kubectl apply` against a cluster with this CRD would: the
    runtime's validation, then the CEL rules on the defaulted object. Empty: the API server accepts it."""
    schema, body = runtime.openapi_schema(crd or runtime.load_crd(CRD_PATH)), runtime.manifest_body(doc)
    return runtime.manifest_errors(body, crd) + cel_errors(apply_defaults(body, schema), schema, "", engine)


def validate_status(status: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Validate a status as the operator writes it through the status subresource."""
    schema = runtime.openapi_schema(crd or runtime.load_crd(CRD_PATH))
    return runtime.schema_errors(status, schema["properties"]["status"], "status")
