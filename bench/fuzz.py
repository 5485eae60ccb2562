"""Fuzz the readers, the config loader, damaged run directories and the tokenized cache with many random
examples (the tests run a few hundred).

    PYTHONPATH=. python bench/fuzz.py                 # 10,000 examples per target
    PYTHONPATH=. python bench/fuzz.py -n 500 yaml     # fewer examples, one target

Targets: readers, config_dict, yaml (tests/test_fuzz.py) and run_files, cache (tests/test_fuzz_run_files.py:
a tiny run is trained once, then each example damages a copy of one of its files or of its cache, and
loading must give a result or a TextclsError, within a minute). A failure prints hypothesis's shrunk
example and exits 1. Prints, per target, the number of examples run and the time taken.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[1]


def load_targets() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))  # the run-file targets train with the tests' tiny configs
    targets = {}
    for name in ("test_fuzz", "test_fuzz_run_files"):
        spec = importlib.util.spec_from_file_location(f"textcls_{name}", ROOT / "tests" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        targets.update(module.TARGETS)
    return targets


def run(name: str, strategy, check, examples: int) -> tuple[int, float]:
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(case):
        count[0] += 1
        check(case)

    start = time.perf_counter()
    fuzz()
    return count[0], time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="readers, config_dict, yaml, run_files, cache (default: all)")
    parser.add_argument("-n", "--examples", type=int, default=10_000, help="examples per target")
    args = parser.parse_args()
    targets = load_targets()
    failed = False
    for name in args.targets or list(targets):
        strategy, check = targets[name]
        try:
            count, seconds = run(name, strategy, check, args.examples)
        except Exception as exc:
            traceback.print_exc()  # with hypothesis's falsifying example in the notes
            print(f"{name}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            failed = True
            continue
        print(f"{name}: {count:,} examples in {seconds:.1f}s, all gave a result or a TextclsError", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
