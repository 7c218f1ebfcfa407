"""Valkey + `reconciler api` (+ optionally the P3 baseline app) for the sidecar scenarios."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.procs import Proc, base_env, start_sidecar, start_valkey
from tests.valkey_server import ValkeyProcess


class SidecarWorld:
    def __init__(self, workdir: Path, *, baseline: bool) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.valkey: ValkeyProcess | None = None
        self.api: Proc | None = None
        self.baseline: Proc | None = None
        try:
            self.valkey = start_valkey(workdir / "valkey")
            env = base_env(
                RECONCILER_VALKEY_URL=self.valkey.url,
                RECONCILER_LOG_LEVEL="WARNING",
                RECONCILER_RUNTIME_DIR=str(workdir / "runtime"),
            )
            self.api = start_sidecar("api", env, workdir)
            if baseline:
                self.baseline = start_sidecar("api-baseline", env, workdir, module="bench.baseline_api")
        except BaseException:
            self.stop()
            raise

    @property
    def valkey_url(self) -> str:
        assert self.valkey is not None
        return self.valkey.url

    def stop(self) -> None:
        for part in (self.baseline, self.api, self.valkey):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
