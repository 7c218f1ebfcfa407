"""Reading Reconcile manifests from files, folders and stdin, and validating them as the cluster would."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler import crd
from reconciler.cli.common import STDIN, fail, note
from reconciler.errors import InvalidSpec
from reconciler.models.spec import ReconcileSpec
from reconciler.runner import parse_spec


@dataclass(frozen=True)
class Manifest:
    source: str
    """Where it came from, e.g. `rec.yaml (document 2)`."""
    doc: dict[str, Any]


def _expand(paths: list[str]) -> Iterator[str]:
    """Files as given; a directory stands for its *.yaml, *.yml and *.json files (like kubectl -f DIR)."""
    for path in paths:
        if path != STDIN and Path(path).is_dir():
            found = sorted(p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            yield from (str(p) for p in found)
        else:
            yield path


def read_documents(path: str) -> list[Any]:
    """Every document of a YAML file (`-`: stdin); items of a `kind: List` count as documents."""
    try:
        if path == STDIN:
            raw = crd.load_yaml_text(sys.stdin)
        else:
            with open(path, encoding="utf-8") as stream:
                raw = crd.load_yaml_text(stream)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{path} is not valid YAML: {exc}")
    docs: list[Any] = []
    for doc in raw:
        is_list = isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list)
        docs += doc["items"] if is_list else [doc]
    return docs


def metadata_of(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = doc.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def read_reconciles(paths: list[str], crd_doc: dict[str, Any]) -> list[Manifest]:
    """The Reconcile documents of `paths`; other objects (Secrets, ...) are skipped with a note."""
    manifests: list[Manifest] = []
    for path in _expand(paths):
        for index, doc in enumerate(read_documents(path), start=1):
            where = f"{'stdin' if path == STDIN else path} (document {index})"
            if not isinstance(doc, dict) or not doc.get("kind"):
                fail(f"{where} is not a Kubernetes object: it has no kind")
            if not crd.is_reconcile(doc, crd_doc):
                shown = f"{doc.get('kind')} {metadata_of(doc).get('name', '')!s}"
                hint = " (pass it with --secret-file to use its token)" if doc.get("kind") == "Secret" else ""
                note(f"skipping {shown} in {where}: not a Reconcile{hint}")
                continue
            manifests.append(Manifest(where, doc))
    if not manifests:
        fail(f"no Reconcile found in {', '.join(paths)}")
    return manifests


def spec_from_manifest(doc: dict[str, Any], crd_doc: dict[str, Any]) -> ReconcileSpec:
    """The manifest's spec, checked first as `kubectl apply` would (the CRD's schema, in the API server's
    words and field paths), then as the operator would (the spec model, which also enforces the CRD's CEL
    rules). Raises InvalidSpec."""
    errors = crd.manifest_errors(doc, crd_doc)
    if errors:
        raise InvalidSpec(crd.describe(errors))
    return parse_spec(doc.get("spec"))
