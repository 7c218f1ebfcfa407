"""Validate Reconcile manifests against the CRD without a cluster, as `kubectl apply` would.

Used at run time by `reconciler plan`/`apply` (GitOps merge-request checks) and, for the shared parts,
by the test suite's fuller reproduction of the API server (`tests/crd_validation.py`, which adds CEL).
The checks, in the API server's order:

1. `apiVersion`, `kind` and `metadata` (name or generateName as an RFC 1123 subdomain, namespace as an
   RFC 1123 label);
2. strict field validation: fields the structural schema does not declare are errors;
3. `null`s of non-nullable fields dropped, then `default`s applied;
4. the OpenAPI v3 schema, through `jsonschema` (the `x-kubernetes-*` extensions removed);
5. `x-kubernetes-list-type` `map`/`set` uniqueness.

The CRD's CEL rules (`x-kubernetes-validations`) are not evaluated here: the pydantic models in
`reconciler.models` enforce the same rules at run time. Errors are `FieldError`s worded like the API
server's (`spec.credentials: Required value`, `spec.integration: Unsupported value: ...`).

The CRD ships with the package (`reconciler/crds/`, a byte-identical copy of `deploy/crds/`).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import jsonschema
import yaml

CRD_FILE = "reconciler.dev_reconciles.yaml"
PACKAGE_CRD = resources.files("reconciler").joinpath("crds", CRD_FILE)
"""The CRD shipped with the package."""

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# --- loading ---


class KubeYamlLoader(yaml.SafeLoader):
    """A SafeLoader that keeps timestamps as strings, as kubectl's YAML-to-JSON conversion does.

    (`expiresAt: 2027-01-31` reaches the API server as the string "2027-01-31", not as a date.)
    """


KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_text(source: str | IO[str]) -> list[Any]:
    """Every non-empty document of a (multi-document) YAML text or stream. Raises yaml.YAMLError."""
    return [doc for doc in yaml.load_all(source, Loader=KubeYamlLoader) if doc is not None]


def load_yaml_documents(path: Path | str) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in load_yaml_text(stream) if doc]


@functools.cache
def _load_crd_cached(path: str | None) -> dict[str, Any]:
    if path is None:
        (crd,) = load_yaml_text(PACKAGE_CRD.read_text(encoding="utf-8"))
    else:
        (crd,) = load_yaml_documents(path)
    if not isinstance(crd, dict):
        raise ValueError(f"{path or PACKAGE_CRD} is not a CustomResourceDefinition")
    return crd


def load_crd(path: Path | str | None = None) -> dict[str, Any]:
    """The CustomResourceDefinition: the package's copy, or the one at `path` (a fresh copy each time,
    so callers may modify it)."""
    return copy.deepcopy(_load_crd_cached(None if path is None else str(path)))


def crd_version(crd: Mapping[str, Any], name: str = "v1alpha1") -> dict[str, Any]:
    for version in crd["spec"]["versions"]:
        if version["name"] == name:
            return dict(version)
    raise KeyError(f"CRD has no version {name}")


def openapi_schema(crd: Mapping[str, Any] | None = None, version: str = "v1alpha1") -> dict[str, Any]:
    """The version's `openAPIV3Schema`."""
    crd = crd if crd is not None else load_crd()
    return dict(crd_version(crd, version)["schema"]["openAPIV3Schema"])


def is_reconcile(doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> bool:
    """Whether a manifest means to be a Reconcile (its kind, or its API group, says so)."""
    crd = crd if crd is not None else load_crd()
    group = str(crd["spec"]["group"])
    return doc.get("kind") == crd["spec"]["names"]["kind"] or str(doc.get("apiVersion", "")).startswith(
        f"{group}/"
    )


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
    """`metadata`, `strict` (unknown field), `schema` (OpenAPI), `list-type` or `cel`."""
    rule: str | None = None
    """For CEL errors: the rule that evaluated to false."""

    def __str__(self) -> str:
        if self.kind == "unknown field":
            return f'unknown field "{self.path}"'
        text = f"{self.path}: {self.kind}"
        return f"{text}: {self.detail}" if self.detail else text


def go_quote(value: Any) -> str:
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


def child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --- formats ---

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        return False
    dt.date.fromisoformat(value)
    return True


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and not re.search(r"\s", value)


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


FORMAT_CHECKER.checks("date", raises=ValueError)(_is_date)
FORMAT_CHECKER.checks("date-time", raises=ValueError)(_is_date_time)
FORMAT_CHECKER.checks("uri", raises=ValueError)(_is_uri)
FORMAT_CHECKER.checks("int64")(_is_int64)
FORMAT_CHECKER.checks("int32")(_is_int32)


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
            child = child_path(path, key)
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
            found += pruned_fields(item, schema["items"], child_path(path, index))
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
            where = child_path(where, part)
        errors += _translate(error, where)
    return errors


def _translate(error: jsonschema.ValidationError, path: str) -> list[FieldError]:
    # The stubs type these as "maybe unset"; an error from iter_errors() always has both.
    value: Any = error.instance
    constraint: Any = error.validator_value
    quoted = go_quote(value)
    match error.validator:
        case "required":
            missing = [name for name in constraint if isinstance(value, dict) and name not in value]
            return [FieldError(child_path(path, name), "Required value") for name in missing]
        case "enum":
            supported = ", ".join(go_quote(option) for option in constraint)
            return [FieldError(path, "Unsupported value", f"{quoted}: supported values: {supported}")]
        case "type" | "format":
            detail = f"{quoted}: {path} in body must be of type {constraint}: {quoted}"
            return [FieldError(path, "Invalid value", detail)]
        case "pattern":
            detail = f"{quoted}: {path} in body should match '{constraint}'"
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


def walk(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[Any, Mapping[str, Any], str]]:
    """(value, schema, path) of every node of `value` that `schema` declares, parents first."""
    yield value, schema, path
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if not path and key == "metadata":
                continue
            if key in properties:
                yield from walk(item, properties[key], child_path(path, key))
            elif isinstance(additional, Mapping):
                yield from walk(item, additional, child_path(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from walk(item, schema["items"], child_path(path, index))


def list_type_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """Duplicates in `x-kubernetes-list-type: set` lists and duplicate keys in `map` lists."""
    errors: list[FieldError] = []
    for node, node_schema, node_path in walk(value, schema, path):
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
                shown = go_quote(item)
            if key in seen:
                errors.append(FieldError(child_path(node_path, index), "Duplicate value", shown, "list-type"))
            seen.add(key)
    return errors


# --- whole objects ---


def defaulted(obj: Any, schema: Mapping[str, Any], path: str = "") -> Any:
    """`obj` as the API server validates it: pruned, `null`s dropped, defaults applied."""
    return apply_defaults(prune(obj, schema, root=not path), schema)


def validate_object(obj: Mapping[str, Any], schema: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """The API server's checks of `obj` against a structural schema, CEL rules aside: unknown fields
    (strict field validation), then, on the pruned and defaulted object, the OpenAPI schema and list types."""
    errors = [
        FieldError(field, "unknown field", source="strict") for field in pruned_fields(obj, schema, path)
    ]
    value = defaulted(obj, schema, path)
    errors += schema_errors(value, schema, path)
    errors += list_type_errors(value, schema, path)
    return list(dict.fromkeys(errors))


def header_errors(doc: Mapping[str, Any], crd: Mapping[str, Any]) -> list[FieldError]:
    """`apiVersion` (a served version of the CRD's group), `kind`, and the metadata's name and namespace."""
    names = crd["spec"]["names"]
    errors: list[FieldError] = []
    served = [f"{crd['spec']['group']}/{v['name']}" for v in crd["spec"]["versions"] if v.get("served")]
    if doc.get("apiVersion") not in served:
        detail = f"{go_quote(doc.get('apiVersion'))}: supported values: {', '.join(served)}"
        errors.append(FieldError("apiVersion", "Unsupported value", detail, "metadata"))
    if doc.get("kind") != names["kind"]:
        detail = f"{go_quote(doc.get('kind'))}: supported values: {go_quote(names['kind'])}"
        errors.append(FieldError("kind", "Unsupported value", detail, "metadata"))
    return errors + metadata_errors(doc.get("metadata"))


def metadata_errors(metadata: Any) -> list[FieldError]:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        detail = f"{go_quote(metadata)}: must be an object"
        return [FieldError("metadata", "Invalid value", detail, "metadata")]
    errors: list[FieldError] = []
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    if not name and not generate_name:
        detail = "name or generateName is required"
        errors.append(FieldError("metadata.name", "Required value", detail, "metadata"))
    if name:
        errors += _name_errors("metadata.name", name, DNS_SUBDOMAIN, 253, "RFC 1123 subdomain")
    namespace = metadata.get("namespace")
    if namespace is not None:
        errors += _name_errors("metadata.namespace", namespace, DNS_LABEL, 63, "RFC 1123 label")
    return errors


_NAME_RULES = {
    "RFC 1123 subdomain": "lower case alphanumeric characters, '-' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'example.com')",
    "RFC 1123 label": "lower case alphanumeric characters or '-', and must start and end with an "
    "alphanumeric character (e.g. 'my-name', or '123-abc')",
}


def _name_errors(
    path: str, value: Any, pattern: re.Pattern[str], max_length: int, what: str
) -> list[FieldError]:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        detail = f"{go_quote(value)}: a lowercase {what} must consist of {_NAME_RULES[what]}"
        return [FieldError(path, "Invalid value", detail, "metadata")]
    if len(value) > max_length:
        detail = f"{go_quote(value)}: must be no more than {max_length} characters"
        return [FieldError(path, "Invalid value", detail, "metadata")]
    return []


def validate_manifest(doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Validate a Reconcile manifest as `kubectl apply` against a cluster with this CRD would, CEL rules
    aside. An empty list means the API server would accept the object (CEL permitting). Only `spec`
    matters on create: with the status subresource, the API server ignores `status` there."""
    crd = crd if crd is not None else load_crd()
    errors = header_errors(doc, crd)
    version = str(doc.get("apiVersion", "")).rpartition("/")[2]
    try:
        schema = openapi_schema(crd, version)
    except KeyError:
        return errors
    return errors + validate_object(manifest_body(doc), schema, "")


def manifest_body(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without `status`, which the API server ignores on create."""
    return {key: value for key, value in doc.items() if key != "status"}


def describe(errors: Iterable[FieldError], limit: int = 5) -> str:
    """One line for a person: the first `limit` errors and how many more there are."""
    texts = [str(error) for error in errors]
    more = len(texts) - limit
    return "; ".join(texts[:limit]) + (f" (and {more} more)" if more > 0 else "")
