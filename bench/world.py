"""A whole operator test bed: Kubernetes API, Valkey, Slack (with latency), secret, operator."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from bench.procs import (
    KubeProc,
    Proc,
    SlackProc,
    operator_env,
    slack_reconcile,
    slack_world,
    start_operator,
    start_valkey,
)
from tests.valkey_server import ValkeyProcess, free_port

NAMESPACE = "bench"
TOKEN = "xoxb-bench_fake_token"  # not a token shape: the before-stop check looks for real ones
WORKSPACE_USERS = 50


class OperatorWorld:
    """Everything `reconciler run` needs, started fresh, stopped in reverse order."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int,
        slack_latency: float,
        lag_probe: bool = False,
        trace_memory: bool = False,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.kube: KubeProc | None = None
        self.valkey: ValkeyProcess | None = None
        self.slack: SlackProc | None = None
        self.operator: Proc | None = None
        self.lag_file = workdir / "lag-samples.txt" if lag_probe or trace_memory else None
        self.memory_file = workdir / "tracemalloc.json" if trace_memory else None
        self.metrics_port = free_port()
        try:
            self.kube = KubeProc(workdir, [NAMESPACE])
            self.valkey = start_valkey(workdir / "valkey")
            self.slack = SlackProc(workdir, slack_world(WORKSPACE_USERS, TOKEN), latency=slack_latency)
            self.kube.create_secret(NAMESPACE, "slack-bot", {"token": TOKEN})
            env = operator_env(
                self.kube.write_kubeconfig(workdir / "kubeconfig"),
                self.valkey.url,
                workdir,
                workers=workers,
                metrics_port=self.metrics_port,
            )
            env.update(env_extra or {})
            if self.memory_file is not None:
                env["BENCH_TRACEMALLOC_OUT"] = str(self.memory_file)
            self.operator = start_operator("operator", env, workdir, lag_samples=self.lag_file)
        except BaseException:
            self.stop()
            raise

    def memory_snapshot(self, label: str, timeout: float = 120) -> None:
        """With `trace_memory`: ask the operator for a tracemalloc snapshot (`idle`, then `after`)."""
        assert self.memory_file is not None
        done = Path(f"{self.memory_file}.{label}.done")
        Path(f"{self.memory_file}.{label}.trigger").touch()
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no tracemalloc snapshot {label} from the operator")
            time.sleep(0.1)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def reconciles(self, prefix: str, count: int, users_per_group: int = 3) -> list[dict[str, object]]:
        assert self.slack is not None
        bodies = []
        for i in range(count):
            first = i % (WORKSPACE_USERS - users_per_group)
            users = [f"user{j}@example.com" for j in range(first, first + users_per_group)]
            bodies.append(slack_reconcile(f"{prefix}-{i}", NAMESPACE, self.slack.api_url, users))
        return bodies

    def stop(self) -> None:
        for part in (self.operator, self.slack, self.valkey, self.kube):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
