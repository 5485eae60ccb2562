"""Fuzz the readers and the config loader with many random examples (the tests run a few hundred).

    PYTHONPATH=. python bench/fuzz.py                 # 10,000 examples per target
    PYTHONPATH=. python bench/fuzz.py -n 500 yaml     # fewer examples, one target

Uses the strategies and checks of tests/test_fuzz.py; a failure prints hypothesis's shrunk example and
exits 1. Prints, per target, the number of examples run and the time taken.
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
    spec = importlib.util.spec_from_file_location("textcls_fuzz_targets", ROOT / "tests" / "test_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TARGETS


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
    parser.add_argument("targets", nargs="*", help="readers, config_dict, yaml (default: all)")
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
