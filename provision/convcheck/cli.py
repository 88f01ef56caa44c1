"""Command line of ``python -m provision.convcheck`` (torch-free: the GPU is only used by workers)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision.convcheck import SCHEMA_VERSION, cases, faults, report, workaround
from provision.convcheck.pool import Worker, WorkerSpec, WorkerStartError, run_suite

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 3

EPILOG = """\
exit status:
  0  every case passed on the requested device
  1  any case failed, crashed, hung or errored (or nothing could run)
  2  usage error (bad option, bad fault spec, --cases matched nothing)
  3  no GPU: --device auto found none (the cases ran on the CPU, verdict "no-gpu"),
     or --device cuda was asked for and torch sees no GPU

The per-case results are appended to a JSONL file as soon as each exists (default: the --json
path with the suffix .jsonl), so nothing is lost if a worker dies. On ROCm, workers get
PYTORCH_MIOPEN_SUGGEST_NHWC=1 (unless already set) so channels_last cases reach MIOpen's NHWC
solvers, and HSA_DISABLE_COREDUMP_ON_EXCEPTION=1 / HSA_COREDUMP_PATTERN=/dev/null with core dumps
off, so a GPU fault costs no disk.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m provision.convcheck",
        description=f"Crash-isolated convolution verification (report schema {SCHEMA_VERSION}).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", choices=cases.PROFILES, default="quick",
                   help="quick: every axis covered once, < 1 min on a mid-range GPU; full: the whole matrix "
                        "plus the big reproducers (default: quick)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: the GPU if torch sees one, else the CPU with verdict no-gpu; cuda: a GPU "
                        "(ROCm builds use the same name); cpu: run on the CPU on purpose (default: auto)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--jsonl", metavar="FILE", help="stream per-case results here (default: FILE.jsonl of --json)")
    p.add_argument("--cases", metavar="FILTER",
                   help="comma-separated globs on case names; a term without *?[ matches as a substring; "
                        "a term starting with ! excludes (e.g. 'fam-,repro-,!fp32')")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per-case timeout in seconds before the worker's process group is killed "
                        "(default: 300 on GPU, 120 on CPU)")
    p.add_argument("--startup-timeout", type=float, default=600.0, metavar="S",
                   help="time a worker may take to import torch and open the device (default: 600)")
    p.add_argument("--no-retry", action="store_true", help="do not re-run a crashed case alone")
    p.add_argument("--find-workaround", action="store_true",
                   help="after the run, search MIOpen solver families then single solvers to disable until "
                        "every failing case passes; report a minimal env-var set")
    p.add_argument("--search-time-limit", type=float, default=900.0, metavar="S",
                   help="wall-clock budget of --find-workaround in seconds: no new candidate starts after it "
                        "(default: 900)")
    p.add_argument("--miopen-release", default="auto", metavar="X.Y",
                   help="try only switch names this MIOpen release reads (auto: the release torch loaded, "
                        "else only names every catalogued release reads)")
    p.add_argument("--progress-file", metavar="FILE",
                   help="append one JSON line per workaround trial here (followed by the live table)")
    p.add_argument("--no-timing", action="store_true", help="skip the TFLOP/s measurement")
    p.add_argument("--worker-per-case", action="store_true",
                   help="start a fresh worker for every case (slow; for benchmarking isolation)")
    p.add_argument("--inject-faults", metavar="JSON",
                   help=f"test/demo only: fault rules for the workers (same as ${faults.ENV_VAR})")
    p.add_argument("--log-dir", metavar="DIR", help="keep worker logs here (default: a temporary directory)")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_PASS
    extra_env: dict[str, str] = {}
    if args.inject_faults:
        try:
            faults.parse(args.inject_faults)
        except ValueError as exc:
            sys.stderr.write(f"convcheck: {exc}\n")
            return EXIT_USAGE
        extra_env[faults.ENV_VAR] = args.inject_faults
    if args.list:
        kind = "cpu" if args.device == "cpu" else "gpu"
        for case in cases.select(cases.generate(args.profile, kind), args.cases):
            sys.stdout.write(f"{case.name}{'  (skipped: ' + case.skip_reason + ')' if case.skip_reason else ''}\n")
        return EXIT_PASS

    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="convcheck-"))
    try:
        return _run(args, extra_env, log_dir, argv)
    finally:
        if not args.log_dir:
            shutil.rmtree(log_dir, ignore_errors=True)


def _run(args: argparse.Namespace, extra_env: dict[str, str], log_dir: Path, argv: list[str] | None) -> int:
    started_at, t0 = _now(), time.monotonic()
    spec = WorkerSpec(device=args.device, env=extra_env, log_dir=log_dir, startup_timeout=args.startup_timeout,
                      timing=not args.no_timing)
    first = Worker(spec)
    try:
        hello = first.start()
    except WorkerStartError as exc:
        sys.stderr.write(f"convcheck: {exc}\n")
        no_gpu = "no GPU" in str(exc)
        if args.json:
            doc = report.build(hello={"device": "none", "error": str(exc)}, results=[], cases=[], profile=args.profile,
                               device_requested=args.device, env=spec.environment(), started_at=started_at,
                               finished_at=_now(), duration_s=time.monotonic() - t0, workers_started=1,
                               argv=argv or sys.argv[1:])
            doc["error"] = str(exc)
            report.write_json(doc, args.json)
        return EXIT_NO_GPU if no_gpu else EXIT_FAIL
    kind = "gpu" if hello["device"] == "cuda" else "cpu"
    selected = cases.select(cases.generate(args.profile, kind), args.cases)
    if not selected:
        first.close()
        sys.stderr.write(f"convcheck: --cases {args.cases!r} matched no case\n")
        return EXIT_USAGE
    timeout = args.timeout or (300.0 if kind == "gpu" else 120.0)
    default_jsonl = f"{Path(args.json).with_suffix('')}.jsonl" if args.json else str(log_dir / "results.jsonl")
    jsonl_path = args.jsonl or default_jsonl
    with open(jsonl_path, "w", encoding="utf-8") as stream:
        stream.write(json.dumps({**hello, "type": "host"}) + "\n")
        stream.flush()

        def sink(result: dict[str, Any]) -> None:
            # Flushed at once: the orchestrator outlives any worker, so the OS has every line even
            # if the worker dies next. Crash records are also fsynced, in case the host goes down
            # too (a per-result fsync cost ~40 ms per case on the benchmark host's disk).
            stream.write(json.dumps({"type": "case", **result}) + "\n")
            stream.flush()
            if result.get("crash"):
                os.fsync(stream.fileno())

        run = run_suite(selected, spec, timeout, sink=sink, retry=not args.no_retry, worker=first,
                        worker_per_case=args.worker_per_case)
    wa = None
    if args.find_workaround:
        wa = _find_workaround(run.results, selected, spec, timeout, log_dir, args, hello)
    doc = report.build(
        hello=hello, results=run.results, cases=selected, profile=args.profile, device_requested=args.device,
        env=spec.environment(), started_at=started_at, finished_at=_now(), duration_s=time.monotonic() - t0,
        workers_started=run.workers_started, workaround=wa, argv=argv if argv is not None else sys.argv[1:],
    )
    doc["jsonl"] = jsonl_path if args.jsonl or args.json else None
    if args.json:
        report.write_json(doc, args.json)
    if not args.quiet:
        report.print_summary(doc)
    return {"pass": EXIT_PASS, "no-gpu": EXIT_NO_GPU}.get(doc["verdict"], EXIT_FAIL)


def _miopen_release(requested: str, hello: dict[str, Any]) -> str | None:
    if requested != "auto":
        return workaround.release_key(requested)
    lib = hello.get("conv_library") or {}
    return workaround.release_key(lib["version"]) if lib.get("name") == "MIOpen" and lib.get("version") else None


def _find_workaround(results: list[dict[str, Any]], selected: list[cases.ConvCase], spec: WorkerSpec,
                     timeout: float, log_dir: Path, args: argparse.Namespace,
                     hello: dict[str, Any]) -> dict[str, Any]:
    by_name = {c.name: c for c in selected}
    failing = [by_name[r["name"]] for r in results if r["status"] in ("fail", "crash", "timeout", "error")]
    passing = [by_name[r["name"]] for r in results if r["status"] == "pass"]
    if not failing:
        return {"status": "none-needed", "env": {}, "fixes": {}, "unfixed": [], "trials": []}
    counter = [0]
    # One kernel cache for every trial (compiled kernels do not depend on the switches), outside the users'.
    cache = log_dir / "miopen-cache"
    cache.mkdir(parents=True, exist_ok=True)

    def runner(run_cases: list[cases.ConvCase], env: dict[str, str]) -> dict[str, str]:
        counter[0] += 1
        # A throwaway user DB per trial: filtered Find results must not land in the host's FindDb
        # (MIOpen debug-log docs), nor leak from one candidate into the next.
        db = log_dir / f"miopen-userdb-{counter[0]}"
        db.mkdir(parents=True, exist_ok=True)
        cand = WorkerSpec(device=spec.device, env={**spec.env, **env, "MIOPEN_USER_DB_PATH": str(db),
                                                   "MIOPEN_CUSTOM_CACHE_DIR": str(cache)},
                          log_dir=log_dir, startup_timeout=spec.startup_timeout, timing=False)
        run = run_suite(run_cases, cand, timeout, retry=False)
        return {r["name"]: r["status"] for r in run.results}

    started = time.monotonic()
    release = _miopen_release(args.miopen_release, hello)

    def progress(done: int, purpose: str) -> None:
        line = {"type": "workaround-trial", "trial": done, "purpose": purpose,
                "elapsed_s": round(time.monotonic() - started, 1), "limit_s": args.search_time_limit}
        if args.progress_file:
            with open(args.progress_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        if not args.quiet:
            sys.stderr.write(f"workaround search: trial {done} ({purpose}), {line['elapsed_s']} s\n")

    return workaround.search(failing, runner, regression=passing, deadline=started + args.search_time_limit,
                             progress=progress, miopen_release=release)
