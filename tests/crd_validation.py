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

Errors are `FieldError`s whose text follows the API server's wording (`spec.credentials: Required
value`, `spec.integration: Unsupported value: ...`), so that expectations written against a real cluster
and against this module look alike. `structural_problems()` checks that a schema is structural and
`pruned_fields()` lists what a structural schema would drop (e.g. a status field the CRD forgot).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

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


# --- loading ---


class KubeYamlLoader(yaml.SafeLoader):
    """A SafeLoader that keeps timestamps as strings, as kubectl's YAML-to-JSON conversion does.

    (`expiresAt: 2027-01-31` reaches the API server as the string "2027-01-31", not as a date.)
    """


KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_documents(path: Path | str) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.load_all(stream, Loader=KubeYamlLoader) if doc]


@functools.cache
def _load_crd_cached(path: str) -> dict[str, Any]:
    (crd,) = load_yaml_documents(path)
    return crd


def load_crd(path: Path | str = CRD_PATH) -> dict[str, Any]:
    """The CustomResourceDefinition (a fresh copy, so callers may modify it)."""
    return copy.deepcopy(_load_crd_cached(str(path)))


def crd_version(crd: Mapping[str, Any], name: str = "v1alpha1") -> dict[str, Any]:
    for version in crd["spec"]["versions"]:
        if version["name"] == name:
            return dict(version)
    raise KeyError(f"CRD has no version {name}")


def openapi_schema(crd: Mapping[str, Any] | None = None, version: str = "v1alpha1") -> dict[str, Any]:
    """The version's `openAPIV3Schema`."""
    crd = crd if crd is not None else load_crd()
    return dict(crd_version(crd, version)["schema"]["openAPIV3Schema"])


def expect_comments(path: Path | str) -> list[str]:
    """The `# expect: <text>` lines of a manifest: substrings its validation errors must contain."""
    text = Path(path).read_text(encoding="utf-8")
    return [match.strip() for match in re.findall(r"^#\s*expect:\s*(.+)$", text, flags=re.MULTILINE)]


# --- errors ---


@dataclass(frozen=True)
class FieldError:
    """One rejected field, worded like the API server's `field.Error`."""

    path: str
    kind: str
    """`Required value`, `Invalid value`, `Unsupported value`, `Too many`, `Too long`, `Forbidden`,
    `Duplicate value` or `unknown field`."""
    detail: str = ""
    source: str = "schema"
    """`strict` (unknown field), `schema` (OpenAPI), `list-type` or `cel`."""
    rule: str | None = None
    """For CEL errors: the rule that evaluated to false."""

    def __str__(self) -> str:
        if self.kind == "unknown field":
            return f'unknown field "{self.path}"'
        text = f"{self.path}: {self.kind}"
        return f"{text}: {self.detail}" if self.detail else text


def _go_quote(value: Any) -> str:
    """Roughly what Go's `%q`/`%v` prints for a JSON value in an error message."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return json.dumps(value)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --- formats ---

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@FORMAT_CHECKER.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        return False
    dt.date.fromisoformat(value)
    return True


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@FORMAT_CHECKER.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and not re.search(r"\s", value)


@FORMAT_CHECKER.checks("int64")
def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@FORMAT_CHECKER.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


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


# --- pruning, nulls and defaults ---


def pruned_fields(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Paths of the fields in `value` that a structural `schema` does not declare (the API server drops
    them, or rejects them under strict field validation). The root's `metadata` is ObjectMeta's business
    and is not inspected."""
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, item in value.items():
            child = _child(path, key)
            if not path and key == "metadata":
                continue
            if properties is not None and key in properties:
                found += pruned_fields(item, properties[key], child)
            elif isinstance(additional, Mapping):
                found += pruned_fields(item, additional, child)
            elif not preserve and additional is not True:
                found.append(child)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            found += pruned_fields(item, schema["items"], _child(path, index))
    return found


def prune(value: Any, schema: Mapping[str, Any], root: bool = True) -> Any:
    """A copy of `value` without the fields that `pruned_fields()` reports."""
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        result = {}
        for key, item in value.items():
            if root and key == "metadata":
                result[key] = copy.deepcopy(item)
            elif properties is not None and key in properties:
                result[key] = prune(item, properties[key], root=False)
            elif isinstance(additional, Mapping):
                result[key] = prune(item, additional, root=False)
            elif preserve or additional is True:
                result[key] = copy.deepcopy(item)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(item, schema["items"], root=False) for item in value]
    return copy.deepcopy(value)


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of `value` with `null`s of non-nullable fields dropped and `default`s filled in, as the API
    server does before validating."""
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        result = {}
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, Mapping) else {})
            if item is None and not sub.get("nullable", False):
                continue
            result[key] = apply_defaults(item, sub)
        for key, sub in properties.items():
            if key not in result and "default" in sub:
                result[key] = apply_defaults(copy.deepcopy(sub["default"]), sub)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return copy.deepcopy(value)


# --- OpenAPI v3 schema, through jsonschema ---


def to_json_schema(schema: Any) -> Any:
    """The OpenAPI v3 schema as a JSON Schema (Draft 2020-12): `x-kubernetes-*` extensions removed (they
    are checked by this module's own code) and `nullable` turned into a `null` type."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties"):
            result[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("default", "enum", "example", "required", "description"):
            result[key] = copy.deepcopy(value)
        else:
            result[key] = to_json_schema(value)
    if schema.get("nullable") is True and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    return result


@functools.cache
def _json_schema_validator(schema_json: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_json)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """OpenAPI v3 validation errors (types, enums, patterns, formats, lengths, item counts, required)."""
    validator = _json_schema_validator(json.dumps(to_json_schema(schema), sort_keys=True))
    errors: list[FieldError] = []
    for error in validator.iter_errors(value):
        where = path
        for part in error.absolute_path:
            where = _child(where, part)
        errors += _translate(error, where)
    return errors


def _translate(error: jsonschema.ValidationError, path: str) -> list[FieldError]:
    value, constraint = error.instance, error.validator_value
    quoted = _go_quote(value)
    match error.validator:
        case "required":
            missing = [name for name in constraint if isinstance(value, dict) and name not in value]
            return [FieldError(_child(path, name), "Required value") for name in missing]
        case "enum":
            supported = ", ".join(_go_quote(option) for option in constraint)
            return [FieldError(path, "Unsupported value", f"{quoted}: supported values: {supported}")]
        case "type":
            detail = f"{quoted}: {path} in body must be of type {constraint}: {quoted}"
            return [FieldError(path, "Invalid value", detail)]
        case "pattern":
            detail = f"{quoted}: {path} in body should match '{constraint}'"
            return [FieldError(path, "Invalid value", detail)]
        case "format":
            detail = f"{quoted}: {path} in body must be of type {constraint}: {quoted}"
            return [FieldError(path, "Invalid value", detail)]
        case "maxLength":
            return [FieldError(path, "Too long", f"may not be more than {constraint} bytes")]
        case "minLength":
            detail = f"{quoted}: {path} in body should be at least {constraint} chars long"
            return [FieldError(path, "Invalid value", detail)]
        case "maxItems":
            return [FieldError(path, "Too many", f"{len(value)}: must have at most {constraint} items")]
        case "minItems":
            detail = f"{len(value)}: {path} in body should have at least {constraint} items"
            return [FieldError(path, "Invalid value", detail)]
        case "minimum" | "maximum":
            relation = "greater" if error.validator == "minimum" else "less"
            detail = f"{quoted}: {path} in body should be {relation} than or equal to {constraint}"
            return [FieldError(path, "Invalid value", detail)]
        case _:
            return [FieldError(path, "Invalid value", f"{quoted}: {error.message}")]


# --- list types ---


def _walk(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[Any, Mapping[str, Any], str]]:
    """(value, schema, path) of every node of `value` that `schema` declares, parents first."""
    yield value, schema, path
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if not path and key == "metadata":
                continue
            if key in properties:
                yield from _walk(item, properties[key], _child(path, key))
            elif isinstance(additional, Mapping):
                yield from _walk(item, additional, _child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _walk(item, schema["items"], _child(path, index))


def list_type_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """Duplicates in `x-kubernetes-list-type: set` lists and duplicate keys in `map` lists."""
    errors: list[FieldError] = []
    for node, node_schema, node_path in _walk(value, schema, path):
        list_type = node_schema.get("x-kubernetes-list-type")
        if not isinstance(node, list) or list_type not in ("set", "map"):
            continue
        seen: set[str] = set()
        for index, item in enumerate(node):
            if list_type == "map":
                if not isinstance(item, dict):
                    continue
                key_values = {key: item.get(key) for key in node_schema["x-kubernetes-list-map-keys"]}
                key = json.dumps(key_values, sort_keys=True)
                shown = "map[string]interface {}" + json.dumps(key_values, separators=(",", ":"))
            else:
                key = json.dumps(item, sort_keys=True)
                shown = _go_quote(item)
            if key in seen:
                errors.append(FieldError(_child(node_path, index), "Duplicate value", shown, "list-type"))
            seen.add(key)
    return errors


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
    errors = [
        FieldError(field, "unknown field", source="strict") for field in pruned_fields(obj, schema, path)
    ]
    defaulted = apply_defaults(prune(obj, schema, root=not path), schema)
    errors += schema_errors(defaulted, schema, path)
    errors += list_type_errors(defaulted, schema, path)
    errors += cel_errors(defaulted, schema, path, engine)
    return list(dict.fromkeys(errors))


def validate_reconcile(
    doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None, engine: str = "cel"
) -> list[FieldError]:
    """Validate a Reconcile manifest as `kubectl apply` against a cluster with this CRD would.

    Returns the errors; an empty list means the API server would accept the object. (Only the `spec` part
    matters on create: with the status subresource, the API server ignores `status` there.)
    """
    crd = crd if crd is not None else load_crd()
    names = crd["spec"]["names"]
    errors: list[FieldError] = []
    served = [f"{crd['spec']['group']}/{v['name']}" for v in crd["spec"]["versions"] if v.get("served")]
    if doc.get("apiVersion") not in served:
        detail = f"{_go_quote(doc.get('apiVersion'))}: supported values: {', '.join(served)}"
        errors.append(FieldError("apiVersion", "Unsupported value", detail))
    if doc.get("kind") != names["kind"]:
        detail = f"{_go_quote(doc.get('kind'))}: supported values: {_go_quote(names['kind'])}"
        errors.append(FieldError("kind", "Unsupported value", detail))
    metadata = doc.get("metadata") or {}
    if not metadata.get("name") and not metadata.get("generateName"):
        errors.append(FieldError("metadata.name", "Required value", "name or generateName is required"))
    version = str(doc.get("apiVersion", "")).rpartition("/")[2]
    try:
        schema = openapi_schema(crd, version)
    except KeyError:
        return errors
    obj = {key: value for key, value in doc.items() if key != "status"}
    return errors + validate_object(obj, schema, "", engine)


def validate_status(status: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Validate a status as the operator writes it through the status subresource."""
    schema = openapi_schema(crd)["properties"]["status"]
    return validate_object(status, schema, "status")


def is_valid(doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> bool:
    return not validate_reconcile(doc, crd)
