"""Run every benchmark script in turn (`make bench`). Add a script by adding a line to BENCHES.

Extra arguments are passed to every script, e.g. `python bench/run_all.py --quick`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHES = [
    "bench/speed.py",
]


def main() -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    failed = []
    for script in BENCHES:
        print(f"==> {script}", flush=True)
        if subprocess.run([sys.executable, str(ROOT / script), *sys.argv[1:]], cwd=ROOT, env=env).returncode:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
