"""The Kubernetes API emulator (tests/kube.py) in a process of its own, so that its CPU use does not
share a GIL with the benchmark driver: `python -m bench.kube_proc -n NAMESPACE ...`.

It runs tests.kube.CountingEmulator: requests are counted, and dropped from kmock's log once
answered, which keeps the cost per request flat (with the whole log kept, 60 Reconciles took 17 s
with the emulator at 100% CPU and the operator at 10%); the served behaviour is unchanged.

Prints the API URL on the first line of stdout, then serves until SIGTERM/SIGINT or stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.common import serve_until_stopped
from tests.kube import CountingEmulator, KubeApi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--namespace", action="append", default=[])
    args = parser.parse_args()
    api = KubeApi(CountingEmulator).start()
    for namespace in args.namespace:
        api.add_namespace(namespace)
    serve_until_stopped(api.url)
    assert isinstance(api.emulator, CountingEmulator)
    # Before stop(): the parent kills this process 2 s after asking it to stop (open watches).
    print("BENCH-COUNTS " + json.dumps(dict(api.emulator.counts)), file=sys.stderr, flush=True)
    api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
