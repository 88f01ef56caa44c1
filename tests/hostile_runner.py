"""Run many `provision` command lines in one process, as the console script would run them (its `main`),
one after the other, and report for each: exit code, stdout, stderr, seconds, and the process's peak resident
memory after it (VmHWM, a high-water mark: the largest case sets it). A case still running after its time limit is
stopped with a BaseException the CLI's own handlers cannot swallow.

    python -m tests.hostile_runner CASES.json > RESULTS.json
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time


class CaseTimeout(BaseException):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise CaseTimeout


def run_case(args: list[str], limit: float) -> dict[str, object]:
    from provision.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    sys.argv = ["provision", *args]
    code: object = None
    timed_out = False
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as exc:
        code = exc.code
    except CaseTimeout:
        timed_out = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"exit": code if isinstance(code, int) else (0 if code is None else 1), "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue(), "seconds": time.monotonic() - start, "timed_out": timed_out,
            "maxrss_mib": peak_mib()}


def peak_mib() -> float:
    """This process's own peak resident memory (VmHWM of its address space). Not getrusage's ru_maxrss: Linux
    carries that over fork and exec, so a child of a large pytest worker would report the worker's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    os.environ.setdefault("COLUMNS", "300")
    os.environ["NO_COLOR"] = "1"
    with open(sys.argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    real_stdout = sys.stdout
    results = {case["id"]: run_case(case["args"], float(case.get("limit", 5))) for case in cases}
    sys.stdout = real_stdout
    json.dump(results, real_stdout)


if __name__ == "__main__":
    main()
