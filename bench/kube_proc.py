"""The Kubernetes API emulator (tests/kube.py) in a process of its own, so that its CPU use does not
share a GIL with the benchmark driver: `python -m bench.kube_proc -n NAMESPACE ...`.

One change for benchmarking: kmock keeps every request it ever served (for test assertions) and,
to pick a reaction for a new request, scans that whole log once per candidate reaction, so each
request costs O(requests so far) and the emulator, not the operator, saturates a core after a few
thousand requests (measured: 60 Reconciles took 17 s with the emulator at 100% CPU and the operator
at 10%). Here a request is dropped from the log once it has been answered, which keeps the cost per
request flat; the served behaviour is unchanged.

Prints the API URL on the first line of stdout, then serves until SIGTERM/SIGINT or stdin closes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
from typing import Any

import kmock

from bench.common import serve_until_stopped
from tests.kube import ApiServerEmulator, KubeApi

COUNTS: collections.Counter[str] = collections.Counter()


class BenchEmulator(ApiServerEmulator):
    async def _handle(self, request: kmock.Request) -> Any:
        kind = str(request.resource.plural if request.resource is not None else "other")
        action = str(getattr(request.action, "name", request.action)).lower()
        COUNTS[f"{action} {kind}{'/' + request.subresource if request.subresource else ''}"] += 1
        try:
            return await super()._handle(request)
        finally:
            log = self._requests
            for index in range(len(log) - 1, -1, -1):
                if log[index] is request:
                    del log[index]
                    break
            for payload in self._payloads:
                with contextlib.suppress(AttributeError):
                    payload._requests.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--namespace", action="append", default=[])
    args = parser.parse_args()
    api = KubeApi(BenchEmulator).start()
    for namespace in args.namespace:
        api.add_namespace(namespace)
    serve_until_stopped(api.url)
    print("BENCH-COUNTS " + json.dumps(dict(COUNTS)), file=sys.stderr, flush=True)
    api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
