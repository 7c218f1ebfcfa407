"""Validate Reconcile manifests against the CRD without a cluster, as `kubectl apply` would.

`reconciler plan`/`apply` (GitOps merge-request checks) run this before the spec model, so that bad
manifests are reported in the API server's words and field paths (`spec.credentials: Required value`).
It is one JSON-Schema validation (`jsonschema`) of the CRD's schema, which reconciler/crdgen.py
generates from the models, with what the API server adds to it:

- unknown fields are errors (strict field validation): `additionalProperties: false` on each object;
- `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` are checked;
- `x-kubernetes-list-type` `set`/`map` items are unique (one extra keyword);
- `null`s are dropped first (none of the fields is nullable).

The CRD's CEL rules are not evaluated here: the spec model enforces the same rules (the tests evaluate
the rules themselves with CEL). The CRD ships with the package (`reconciler/crds/`).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import jsonschema
import yaml

CRD_FILE = "reconciler.dev_reconciles.yaml"
PACKAGE_CRD = resources.files("reconciler").joinpath("crds", CRD_FILE)
"""The CRD shipped with the package."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
METADATA_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
}
"""What the API server checks of ObjectMeta on create, as far as a manifest can get it wrong."""


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
def _load_crd(path: str | None) -> dict[str, Any]:
    text = PACKAGE_CRD.read_text(encoding="utf-8") if path is None else Path(path).read_text(encoding="utf-8")
    (crd,) = load_yaml_text(text)
    if not isinstance(crd, dict):
        raise ValueError(f"{path or PACKAGE_CRD} is not a CustomResourceDefinition")
    if path is None and not _knows_every_integration(crd):
        from reconciler import crdgen

        return crdgen.crd()
    return crd


def _knows_every_integration(crd: Mapping[str, Any]) -> bool:
    """Whether the packaged CRD (made for the built-ins) has every installed integration's block."""
    from reconciler.integrations.registry import INTEGRATIONS

    spec = openapi_schema(crd)["properties"]["spec"]["properties"]
    return set(spec["integration"]["enum"]) == set(INTEGRATIONS)


def load_crd(path: Path | str | None = None) -> dict[str, Any]:
    """The CustomResourceDefinition: the package's copy (generated from the models when plug-in
    integrations are installed, which that copy does not know), or the one at `path` (a fresh copy
    each time, so callers may modify it)."""
    return copy.deepcopy(_load_crd(None if path is None else str(path)))


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
    rule: str | None = None
    """For CEL errors (tests/crd_validation.py): the rule that evaluated to false."""

    def __str__(self) -> str:
        if self.kind == "unknown field":
            return f'unknown field "{self.path}"'
        text = f"{self.path}: {self.kind}"
        return f"{text}: {self.detail}" if self.detail else text


def go_quote(value: Any) -> str:
    """Roughly what Go's `%q`/`%v` prints for a JSON value in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "object" if isinstance(value, dict) else "array"
    return json.dumps(value)


def child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --- the JSON-Schema validation ---

FORMAT_CHECKER = jsonschema.FormatChecker(["date"])


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or ("T" in value.upper() and bool(dt.datetime.fromisoformat(value)))


def _unique_items(
    validator: Any, list_type: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """`x-kubernetes-list-type`: no two equal items in a `set`, no two equal keys in a `map`."""
    if list_type not in ("set", "map") or not isinstance(instance, list):
        return
    seen: set[str] = set()
    for index, item in enumerate(instance):
        if list_type == "map" and isinstance(item, dict):
            item = {key: item.get(key) for key in schema["x-kubernetes-list-map-keys"]}
        if (key := json.dumps(item, sort_keys=True)) in seen:
            yield jsonschema.ValidationError(key, path=[index])
        seen.add(key)


KubeValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"x-kubernetes-list-type": _unique_items}
)


def strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with unknown fields as errors, as under strict field validation."""
    result = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        result["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        result.setdefault("additionalProperties", False)
    if isinstance(schema.get("items"), Mapping):
        result["items"] = strict(schema["items"])
    return result


@functools.cache
def _validator(schema_json: str) -> Any:
    return KubeValidator(json.loads(schema_json), format_checker=FORMAT_CHECKER)


def drop_nulls(value: Any) -> Any:
    """`value` without `null` fields, as the API server drops them from non-nullable fields."""
    if isinstance(value, dict):
        return {key: drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """Errors of `value` (nulls dropped) against a structural `schema`, unknown fields included."""
    validator = _validator(json.dumps(strict(schema), sort_keys=True))
    errors: list[FieldError] = []
    for error in validator.iter_errors(drop_nulls(value)):
        where = path
        for part in error.absolute_path:
            where = child_path(where, part)
        errors += _translate(error, where)
    return list(dict.fromkeys(errors))


_WORDING = {
    "enum": ("Unsupported value", "{quoted}: supported values: {supported}"),
    "type": ("Invalid value", "{quoted}: {path} in body must be of type {constraint}: {quoted}"),
    "format": ("Invalid value", "{quoted}: {path} in body must be of type {constraint}: {quoted}"),
    "pattern": ("Invalid value", "{quoted}: {path} in body should match '{constraint}'"),
    "maxLength": ("Too long", "may not be more than {constraint} bytes"),
    "minLength": ("Invalid value", "{quoted}: {path} in body should be at least {constraint} chars long"),
    "maxItems": ("Too many", "{size}: must have at most {constraint} items"),
    "minItems": ("Invalid value", "{size}: {path} in body should have at least {constraint} items"),
    "x-kubernetes-list-type": ("Duplicate value", "{message}"),
}
"""jsonschema's keyword -> the API server's error type and detail."""


def _translate(error: jsonschema.ValidationError, path: str) -> list[FieldError]:
    value: Any = error.instance  # the stubs say "maybe unset"; iter_errors() always sets both
    constraint: Any = error.validator_value
    if error.validator == "additionalProperties":
        declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [FieldError(child_path(path, key), "unknown field") for key in value if key not in declared]
    if error.validator == "required":
        missing = [name for name in constraint if isinstance(value, dict) and name not in value]
        return [FieldError(child_path(path, name), "Required value") for name in missing]
    if error.validator == "anyOf" and all(sub.validator == "required" for sub in error.context):
        names = [str(sub.validator_value[0]) for sub in error.context]  # type: ignore[index]
        return [FieldError(child_path(path, names[0]), "Required value", f"{' or '.join(names)} is required")]
    kind, template = _WORDING.get(str(error.validator), ("Invalid value", "{quoted}: {message}"))
    detail = template.format(
        quoted=go_quote(value),
        path=path,
        constraint=constraint,
        size=len(value) if isinstance(value, list) else 0,
        supported=", ".join(go_quote(option) for option in constraint) if error.validator == "enum" else "",
        message=error.message,
    )
    return [FieldError(path, kind, detail)]


# --- manifests ---


def manifest_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The schema a manifest of `version` is validated against: the version's `openAPIV3Schema`, with
    `apiVersion` a served version of the CRD's group, `kind` the CRD's, and `metadata` checked."""
    served = [f"{crd['spec']['group']}/{v['name']}" for v in crd["spec"]["versions"] if v.get("served")]
    schema = openapi_schema(crd, version)
    schema["properties"] = schema["properties"] | {
        "apiVersion": {"enum": served},
        "kind": {"enum": [crd["spec"]["names"]["kind"]]},
        "metadata": METADATA_SCHEMA,
    }
    schema["required"] = ["apiVersion", "kind", "metadata", *schema.get("required", [])]
    return schema


def manifest_errors(doc: Mapping[str, Any], crd: Mapping[str, Any] | None = None) -> list[FieldError]:
    """The schema errors `kubectl apply` of this Reconcile manifest would meet on a cluster with this CRD,
    CEL rules aside. An empty list means the API server would accept the object (CEL permitting)."""
    crd = crd if crd is not None else load_crd()
    versions = [v["name"] for v in crd["spec"]["versions"]]
    version = str(doc.get("apiVersion", "")).rpartition("/")[2]
    return schema_errors(
        manifest_body(doc), manifest_schema(crd, version if version in versions else versions[0])
    )


def manifest_body(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without `status`, which the API server ignores on create (status subresource)."""
    return {key: value for key, value in doc.items() if key != "status"}


def describe(errors: Iterable[FieldError], limit: int = 5) -> str:
    """One line for a person: the first `limit` errors and how many more there are."""
    texts = [str(error) for error in errors]
    more = len(texts) - limit
    return "; ".join(texts[:limit]) + (f" (and {more} more)" if more > 0 else "")
