"""What a Ray worker imports to unpickle the sweep's trainable: no torch. Importing torch in the
actor's constructor (1.5-4 s on 2 cores) kept the second actor of a short sweep from starting
and held Tune's end-of-experiment cleanup ~1.4 s (RESULTS.md, sweep overhead, fifth round);
each trial imports what it needs when it runs."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_the_trainable_module_imports_without_torch() -> None:
    code = ("import sys, sweeps.tune.trainable, sweeps.tune.plan_clock; "
            "print(sorted(m for m in ('torch', 'pruning_core.trials.registries') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]", p.stdout
