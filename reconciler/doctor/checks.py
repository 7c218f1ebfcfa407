"""The checks of `reconciler doctor`. Each returns Checks; none raises, none prints a token."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import yaml
from pydantic import SecretStr

from reconciler import crd
from reconciler.credentials import token_from_secret
from reconciler.doctor import Check, Status
from reconciler.doctor.kube import Kube, KubeUnavailable, login
from reconciler.errors import CredentialsNotFound, ReconcileError
from reconciler.integrations.registry import INTEGRATIONS
from reconciler.logs import redact
from reconciler.models.spec import ReconcileSpec, SecretRef
from reconciler.runner import check_hosts, parse_spec, target_url
from reconciler.settings import Settings
from reconciler.tenancy import check_credentials_label

RBAC_FILE = resources.files("reconciler").joinpath("doctor", "operator-rbac.yaml")
"""The operator's rules: a copy of the chart's files/operator-rbac.yaml, from which its RBAC is rendered."""

MAX_DIFFERENCES = 3


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str


def operator_rules() -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(RBAC_FILE.read_text(encoding="utf-8"))
    return loaded


def run_checks(settings: Settings, target: Target | None, namespace: str | None) -> list[Check]:
    """Every check, in order; `namespace` is where the RBAC of Reconciles is checked (None: all).
    The allowed hosts are enforced as the operator does: no token goes to a host it would refuse."""
    settings = settings.model_copy(update={"enforce_allowed_hosts": True})
    checks: list[Check] = []
    kube: Kube | None = None
    try:
        kube = Kube(login())
        version = kube.version()
        checks.append(Check("cluster", Status.OK, f"reachable at {kube.server} (Kubernetes {version})"))
    except KubeUnavailable as exc:
        checks.append(Check("cluster", Status.FAIL, redact(str(exc))))
        if kube is not None:
            kube.close()
            kube = None
    try:
        if kube is None:
            skipped = "skipped: the cluster is not reachable"
            checks += [Check(name, Status.SKIP, skipped) for name in ("crd", "rbac")]
        else:
            checks += _guard("crd", lambda: [check_crd(kube)])
            checks += _guard(
                "rbac", lambda: list(check_rbac(kube, target.namespace if target else namespace))
            )
        checks.append(check_valkey(settings))
        if target is not None:
            checks += _guard("reconcile", lambda: list(check_reconcile(kube, target, settings)))
    finally:
        if kube is not None:
            kube.close()
    return checks


def _guard(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    """A cluster that vanishes halfway is a failed check, not a traceback."""
    try:
        return run()
    except KubeUnavailable as exc:
        return [Check(name, Status.FAIL, redact(str(exc)))]


# --- the CRD --------------------------------------------------------------------------------------


def check_crd(kube: Kube) -> Check:
    answer = kube.crd()
    fix = f"kubectl apply --server-side -f deploy/crds/{crd.CRD_FILE}"
    if answer.status == 404:
        return Check("crd", Status.FAIL, f"reconciles.reconciler.dev is not installed; install it: {fix}")
    if answer.status >= 400:
        return Check(
            "crd", Status.FAIL, f"cannot read the CRD (HTTP {answer.status}): {_message(answer.body)}"
        )
    packaged = crd.load_crd()
    differences = list(_differences(packaged.get("spec") or {}, answer.body.get("spec") or {}, "spec"))
    if differences:
        shown = ", ".join(differences[:MAX_DIFFERENCES])
        more = len(differences) - MAX_DIFFERENCES
        shown += f" and {more} more" if more > 0 else ""
        return Check(
            "crd",
            Status.FAIL,
            f"the installed CRD differs from this version's ({shown}): version skew; update it: {fix}",
        )
    return Check("crd", Status.OK, "installed, and equal to this version's CRD")


def _differences(packaged: Any, installed: Any, path: str) -> Iterator[str]:
    """Where `installed` lacks or changes what `packaged` says (fields the API server adds by
    defaulting, such as `conversion`, are not differences)."""
    if isinstance(packaged, Mapping) and isinstance(installed, Mapping):
        for key, value in packaged.items():
            if key not in installed:
                yield f"{path}.{key} missing"
            else:
                yield from _differences(value, installed[key], f"{path}.{key}")
    elif isinstance(packaged, list) and isinstance(installed, list):
        if len(packaged) != len(installed):
            yield f"{path} has {len(installed)} items, not {len(packaged)}"
        else:
            for index, (mine, theirs) in enumerate(zip(packaged, installed, strict=True)):
                yield from _differences(mine, theirs, f"{path}[{index}]")
    elif packaged != installed:
        yield f"{path} differs"


# --- RBAC -----------------------------------------------------------------------------------------


def check_rbac(kube: Kube, namespace: str | None) -> Iterator[Check]:
    """One SelfSubjectAccessReview per verb of the chart's rules, for the caller: run doctor with the
    operator's own credentials (in its pod, or its kubeconfig) to check the operator's RBAC."""
    rules = operator_rules()
    where = f"in namespace {namespace}" if namespace else "in every namespace"
    needed = [(rule, None) for rule in rules["cluster"]] + [(rule, namespace) for rule in rules["namespaced"]]
    denied, total = _review(kube, needed)
    if denied:
        yield Check(
            "rbac", Status.FAIL, f"denied {where}: {', '.join(denied)}; grant them (see the chart's RBAC)"
        )
    else:
        yield Check("rbac", Status.OK, f"all {total} verbs the operator uses are allowed {where}")
    peering = rules["namespacedPeering"] if namespace else rules["clusterPeering"]
    denied, total = _review(kube, [(rule, namespace) for rule in peering])
    if denied:
        yield Check(
            "rbac-peering",
            Status.WARN,
            f"denied: {', '.join(denied)}; needed only with more than one replica",
        )
    else:
        yield Check("rbac-peering", Status.OK, f"all {total} verbs of Kopf peering are allowed")


def _review(kube: Kube, rules: list[tuple[dict[str, Any], str | None]]) -> tuple[list[str], int]:
    denied: list[str] = []
    total = 0
    for rule, namespace in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    total += 1
                    allowed, _ = kube.can(verb, group, resource, namespace)
                    if not allowed:
                        denied.append(f"{verb} {resource}{'.' + group if group else ''}")
    return denied, total


# --- Valkey ---------------------------------------------------------------------------------------


def check_valkey(settings: Settings) -> Check:
    if settings.valkey_url is None:
        return Check(
            "valkey",
            Status.SKIP,
            "skipped: RECONCILER_VALKEY_URL is unset, so `reconciler run` starts a private embedded "
            "Valkey (dev only); set it to the Valkey the operator uses",
        )
    from reconciler.cache.valkey import ValkeyCache

    cache = ValkeyCache.from_url(settings.valkey_url, timeout=settings.cache_timeout_seconds)
    try:
        info = cast(dict[str, Any], cache.client.info("memory"))
    except Exception as exc:  # valkey's connection, timeout and auth errors
        return Check(
            "valkey", Status.FAIL, f"{cache.display_url} is unreachable: {type(exc).__name__}: {exc}"
        )
    finally:
        cache.client.close()  # type: ignore[no-untyped-call]
    limit = int(info.get("maxmemory") or 0)
    limit_text = f"maxmemory {info.get('maxmemory_human', limit)}" if limit else "no maxmemory limit"
    return Check(
        "valkey",
        Status.OK,
        f"reachable at {cache.display_url}: using {info.get('used_memory_human', '?')}, {limit_text}, "
        f"maxmemory-policy {info.get('maxmemory_policy', '?')}",
    )


# --- one Reconcile --------------------------------------------------------------------------------


def check_reconcile(kube: Kube | None, target: Target, settings: Settings) -> Iterator[Check]:
    key = f"{target.namespace}/{target.name}"
    names = ("reconcile", "hosts", "secret", "secret-allowed", "token", "scopes")
    if kube is None:
        yield from (Check(n, Status.SKIP, "skipped: the cluster is not reachable") for n in names)
        return
    answer = kube.reconcile(target.namespace, target.name)
    if answer.status >= 400:
        found = "does not exist" if answer.status == 404 else f"cannot be read (HTTP {answer.status})"
        yield Check("reconcile", Status.FAIL, f"Reconcile {key} {found}")
        yield from (Check(n, Status.SKIP, "skipped: no Reconcile to check") for n in names[1:])
        return
    try:
        spec = parse_spec(answer.body.get("spec"))
    except ReconcileError as exc:
        yield Check("reconcile", Status.FAIL, f"Reconcile {key}: {exc.message}")
        yield from (Check(n, Status.SKIP, "skipped: the spec is invalid") for n in names[1:])
        return
    yield Check("reconcile", Status.OK, f"Reconcile {key} ({spec.integration}) has a valid spec")
    hosts_ok = yield from check_target_host(spec, settings)
    token = yield from check_secret(kube, target.namespace, spec)
    if not hosts_ok:
        skipped = "skipped: the token is not sent to a host that is not allowed"
        yield from (Check(n, Status.SKIP, skipped) for n in ("token", "scopes"))
    elif token is None:
        yield from (Check(n, Status.SKIP, "skipped: no token to check") for n in ("token", "scopes"))
    else:
        yield from check_token(spec, token, settings)


def check_target_host(spec: ReconcileSpec, settings: Settings) -> Generator[Check, None, bool]:
    """The spec's service URL against RECONCILER_ALLOWED_HOSTS (as this process has it: run doctor
    with the operator's environment), after DNS resolution, as the operator checks it."""
    url, field = target_url(spec)
    try:
        check_hosts(spec, settings)
    except ReconcileError as exc:
        yield Check("hosts", Status.FAIL, f"{exc.reason}: {exc.message}")
        return False
    yield Check("hosts", Status.OK, f"{field} {url} is allowed by RECONCILER_ALLOWED_HOSTS")
    return True


def check_secret(kube: Kube, namespace: str, spec: ReconcileSpec) -> Generator[Check, None, SecretStr | None]:
    """The Secret's checks; returns the token when there is one (a generator's return value)."""
    ref = spec.credentials.secret_ref
    where = f"Secret {namespace}/{ref.name}"
    answer = kube.secret(namespace, ref.name)
    if answer.status == 404:
        yield Check(
            "secret", Status.FAIL, f"{where} does not exist; create it with the token under key {ref.key!r}"
        )
        yield Check("secret-allowed", Status.SKIP, "skipped: no Secret")
        return None
    if answer.status >= 400:
        yield Check(
            "secret", Status.FAIL, f"cannot read {where} (HTTP {answer.status}): {_message(answer.body)}"
        )
        yield Check("secret-allowed", Status.SKIP, "skipped: no Secret")
        return None
    token = _token(answer.body, ref)
    if token is None:
        keys = ", ".join(sorted(answer.body.get("data") or {})) or "none"
        yield Check("secret", Status.FAIL, f"{where} has no usable key {ref.key!r} (it has: {keys})")
    else:
        yield Check("secret", Status.OK, f"{where} exists and has a value under key {ref.key!r}")
    try:
        check_credentials_label((answer.body.get("metadata") or {}).get("labels"), where)
    except ReconcileError as exc:
        yield Check("secret-allowed", Status.FAIL, f"{exc.reason}: {exc.message}")
        return None
    yield Check("secret-allowed", Status.OK, f"{where} is labelled as credentials the operator may use")
    return token


def _token(secret: dict[str, Any], ref: SecretRef) -> SecretStr | None:
    try:
        return token_from_secret(secret, ref, "the Secret")
    except CredentialsNotFound:
        return None


def check_token(spec: ReconcileSpec, token: SecretStr, settings: Settings) -> Iterator[Check]:
    """The token works (one cheap read), and has the scopes this spec needs (to apply it, unless
    it is a dry run)."""
    integration = INTEGRATIONS[spec.integration]
    service = integration.service(spec.integration_spec, token, settings)
    try:
        try:
            identity = service.identity()
            granted = service.granted_scopes()
        except ReconcileError as exc:
            yield Check("token", Status.FAIL, redact(f"{exc.reason}: {exc.message}"))
            yield Check("scopes", Status.SKIP, "skipped: the token does not work")
            return
        yield Check("token", Status.OK, f"works: {identity}")
        needed = integration.needed_scopes(spec.integration_spec, write=not spec.dry_run)
        purpose = "plan this dryRun spec" if spec.dry_run else "apply this spec"
        if granted is None:
            yield Check(
                "scopes",
                Status.WARN,
                f"the service does not tell this token's scopes; {purpose} needs: "
                f"{', '.join(sorted(needed))}",
            )
            return
        missing = integration.missing_scopes(needed, granted)
        if missing:
            yield Check(
                "scopes",
                Status.FAIL,
                f"missing {', '.join(missing)} to {purpose} "
                f"(the token has: {', '.join(sorted(granted)) or 'none'})",
            )
        else:
            yield Check("scopes", Status.OK, f"has {', '.join(sorted(needed))}: all it needs to {purpose}")
    finally:
        service.close()


def _message(body: Mapping[str, Any]) -> str:
    return str(body.get("message") or body.get("reason") or "no details")
