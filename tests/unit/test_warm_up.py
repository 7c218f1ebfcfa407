"""The operator imports each integration's service at startup (Integration.warm_up), so its first
runs do not all wait on one lazy import while holding the GIL (seen in the P5 profile)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from reconciler.integrations.registry import INTEGRATIONS
builtin = [i for i in INTEGRATIONS.values() if type(i).__module__.startswith("reconciler.integrations.")]
services = [f"{type(i).__module__}.service" for i in builtin]
assert not [m for m in services if m in sys.modules], "imported before the warm-up"
for integration in INTEGRATIONS.values():
    integration.warm_up()
missing = [m for m in services if m not in sys.modules]
assert not missing, missing
print(len(services))
"""


def test_warm_up_imports_every_builtin_service_module() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 2
