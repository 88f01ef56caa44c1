"""The long-lived worker: reads cases (JSON lines) on stdin, writes results on a dedicated pipe.

Started by ``pool.Worker`` as ``python -m provision.convcheck.worker --device D`` in a new session,
with core dumps off. Protocol (one JSON object per line on the result fd):

* first ``{"type": "hello", ...host info...}`` (or ``{"type": "hello", "error": ...}``);
* then one ``{"type": "result", ...}`` per ``{"type": "case", "case": {...}}`` request.

After a result marked ``fatal`` (the GPU context is poisoned) the worker exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import warnings
from typing import IO, Any

RESULT_FD_ENV = "PROVISION_CONVCHECK_RESULT_FD"
EXIT_FATAL = 3


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="provision.convcheck.worker")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args(argv)

    # No core files from this process (the GPU core dump is turned off through HSA_* env vars).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = os.fdopen(int(os.environ[RESULT_FD_ENV]), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # anything a library prints stays out of the protocol channel

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from provision.convcheck import faults, hostinfo
    from provision.convcheck.cases import ConvCase
    from provision.convcheck.execute import run_case

    try:
        rules = faults.from_env()
    except ValueError as exc:
        _send(out, {"type": "hello", "error": f"bad fault spec: {exc}"})
        return 2
    hello = hostinfo.describe(args.device)
    _send(out, {"type": "hello", **hello, "pid": os.getpid(), "faults": len(rules)})
    if hello.get("error"):
        return 2
    device = hello["device"]
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("type") == "stop":
            break
        case = ConvCase.from_dict(request["case"])
        result = run_case(case, device, rules, timing=not args.no_timing)
        _send(out, {"type": "result", **result})
        if result.get("fatal"):
            return EXIT_FATAL
    # Every result is already on the pipe: skip interpreter finalisation (torch / CUDA / HIP
    # teardown takes up to a second and there is nothing left to flush).
    out.close()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
