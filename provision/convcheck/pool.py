"""Crash isolation (torch-free): one long-lived worker process, replaced only when it dies.

The orchestrator never imports torch. It starts ``provision.convcheck.worker`` in a fresh
interpreter and a new session (so a timeout can kill the whole process group), with core dumps
off (RLIMIT_CORE 0, HSA_DISABLE_COREDUMP_ON_EXCEPTION=1, HSA_COREDUMP_PATTERN=/dev/null). Cases go
over stdin; results come back on a dedicated pipe. The worker's stdout/stderr go to a log file
whose new bytes are read after a crash to classify it. Every result is handed to ``sink`` as soon
as it exists (the CLI appends it to a JSONL file).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.convcheck.cases import ConvCase
from provision.convcheck.crash import classify
from provision.convcheck.worker import EXIT_FATAL, RESULT_FD_ENV

# Settings every worker gets (the user's environment can override the last one).
WORKER_ENV = {
    "HSA_DISABLE_COREDUMP_ON_EXCEPTION": "1",
    "HSA_COREDUMP_PATTERN": "/dev/null",
    "PYTHONFAULTHANDLER": "1",
    "PYTHONUNBUFFERED": "1",
}
WORKER_ENV_DEFAULTS = {
    # Without it MIOpen never sees NHWC: PyTorch converts channels_last to NCHW first.
    "PYTORCH_MIOPEN_SUGGEST_NHWC": "1",
}
RETRY_STATUSES = ("crash", "timeout")
STDERR_TAIL = 4000


def package_root() -> str:
    """The directory that contains the ``provision`` package (goes on the worker's PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


def _no_core_dumps() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class WorkerStartError(RuntimeError):
    """The worker died or hung before saying hello."""

    def __init__(self, message: str, crash: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.crash = crash


@dataclass
class WorkerSpec:
    """How to start workers: device request, extra env, where logs go, limits."""

    device: str = "auto"
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path("."))
    startup_timeout: float = 600.0
    timing: bool = True
    python: str = sys.executable

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in WORKER_ENV_DEFAULTS.items():
            env.setdefault(key, value)
        env.update(WORKER_ENV)
        env.update(self.env)
        root = package_root()
        env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        return env


@dataclass
class Outcome:
    """What running one case in a worker produced."""

    result: dict[str, Any]
    worker_alive: bool


class Worker:
    """One worker process and its two channels."""

    _counter = 0

    def __init__(self, spec: WorkerSpec) -> None:
        Worker._counter += 1
        self.spec = spec
        self.index = Worker._counter
        self.log_path = spec.log_dir / f"worker-{os.getpid()}-{self.index}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._buf = b""
        self.hello: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start the process and wait for its hello; raises WorkerStartError."""
        read_fd, write_fd = os.pipe()
        env = self.spec.environment()
        env[RESULT_FD_ENV] = str(write_fd)
        args = [self.spec.python, "-m", "provision.convcheck.worker", "--device", self.spec.device]
        if not self.spec.timing:
            args.append("--no-timing")
        self.spec.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, pass_fds=(write_fd,),
                start_new_session=True, preexec_fn=_no_core_dumps, cwd=str(self.spec.log_dir),
            )
        os.close(write_fd)
        self._fd = read_fd
        offset = 0
        try:
            message = self._read_message(time.monotonic() + self.spec.startup_timeout)
        except TimeoutError:
            crash = self._kill_and_classify(offset, timed_out=True)
            raise WorkerStartError(f"worker did not start within {self.spec.startup_timeout:.0f} s", crash) from None
        if message is None:
            crash = self._reap_and_classify(offset)
            raise WorkerStartError(f"worker died during start-up: {crash['summary']}", crash)
        self.hello = message
        if message.get("error"):
            self.close()
            raise WorkerStartError(str(message["error"]))
        return message

    def close(self) -> None:
        """Ask the worker to stop; kill its process group if it does not."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"type": "stop"}\n')
                proc.stdin.close()
                proc.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._kill_group()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- one case --------------------------------------------------------------------------
    def run_case(self, case: ConvCase, timeout: float) -> Outcome:
        """Send ``case``; return its result, or a crash / timeout record if the worker died."""
        assert self.proc is not None and self.proc.stdin is not None
        offset = self._log_size()
        t0 = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps({"type": "case", "case": case.to_dict()}) + "\n").encode())
            self.proc.stdin.flush()
            message = self._read_message(t0 + timeout)
        except TimeoutError:  # before OSError: TimeoutError is a subclass of it
            crash = self._kill_and_classify(offset, timed_out=True)
            return Outcome(self._crash_result(case, "timeout", crash, time.monotonic() - t0), False)
        except (BrokenPipeError, OSError):
            message = None
        if message is None:
            crash = self._reap_and_classify(offset)
            return Outcome(self._crash_result(case, "crash", crash, time.monotonic() - t0), False)
        message.pop("type", None)
        if message.get("fatal"):
            crash = self._reap_and_classify(offset, expect_exit=EXIT_FATAL, extra_text=message.get("error", ""))
            message["crash"] = crash
            return Outcome(message, False)
        return Outcome(message, True)

    # -- internals -------------------------------------------------------------------------
    def _crash_result(self, case: ConvCase, status: str, crash: dict[str, Any], elapsed: float) -> dict[str, Any]:
        return {"name": case.name, "status": status, "passes": {}, "error": crash["summary"], "crash": crash,
                "time_s": round(elapsed, 4)}

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _stderr_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def _kill_and_classify(self, offset: int, timed_out: bool) -> dict[str, Any]:
        self._kill_group()
        rc = self.proc.returncode if self.proc else None
        return self._finish(classify(rc, self._stderr_since(offset), timed_out=timed_out), offset)

    def _reap_and_classify(self, offset: int, expect_exit: int | None = None, extra_text: str = "") -> dict[str, Any]:
        assert self.proc is not None
        try:
            rc: int | None = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill_group()
            rc = self.proc.returncode
        # Whatever is left of the group (helper threads' children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        rec = classify(rc, self._stderr_since(offset) + "\n" + extra_text)
        if expect_exit is not None and rc == expect_exit:
            rec["worker_exit"] = "fatal error reported by the worker"
        return self._finish(rec, offset)

    def _finish(self, rec: dict[str, Any], offset: int) -> dict[str, Any]:
        rec["stderr_tail"] = self._stderr_since(offset)[-STDERR_TAIL:]
        self.close()
        return rec


def needs_retry(result: dict[str, Any]) -> bool:
    return result.get("status") in RETRY_STATUSES or bool(result.get("fatal"))


def _skipped(case: ConvCase) -> dict[str, Any]:
    return {"name": case.name, "status": "skipped", "passes": {}, "error": case.skip_reason, "time_s": 0.0}


@dataclass
class SuiteRun:
    """Results of a run, plus the hello of the first worker and how many workers were started."""

    results: list[dict[str, Any]]
    hello: dict[str, Any]
    workers_started: int


def run_suite(
    cases: Iterable[ConvCase],
    spec: WorkerSpec,
    timeout: float,
    sink: Callable[[dict[str, Any]], None] = lambda r: None,
    retry: bool = True,
    worker: Worker | None = None,
    worker_per_case: bool = False,
) -> SuiteRun:
    """Run ``cases`` in one worker, replacing it only when it dies; retry crashes alone once."""
    results: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    started = 0 if worker is None else 1
    hello = worker.hello if worker else {}
    start_failures = 0

    def emit(result: dict[str, Any]) -> None:
        if result["name"] not in results:
            order.append(result["name"])
        results[result["name"]] = result
        sink(result)

    def fresh() -> Worker:
        nonlocal started, hello
        w = Worker(spec)
        started += 1
        hello_msg = w.start()
        hello = hello or hello_msg
        return w

    case_list = list(cases)
    for i, case in enumerate(case_list):
        if case.skip_reason:
            emit(_skipped(case))
            continue
        try:
            if worker is None or not worker.alive:
                worker = fresh()
            start_failures = 0
        except WorkerStartError as exc:
            start_failures += 1
            emit({"name": case.name, "status": "error", "passes": {}, "time_s": 0.0,
                  "error": f"worker could not start: {exc}", "crash": exc.crash})
            if start_failures >= 2:
                for rest in case_list[i + 1:]:
                    emit({"name": rest.name, "status": "error", "passes": {}, "time_s": 0.0,
                          "error": "not run: workers could not be started"})
                break
            continue
        outcome = worker.run_case(case, timeout)
        emit(outcome.result)
        if not outcome.worker_alive:
            worker = None
        if retry and needs_retry(outcome.result):
            worker = _retry_alone(case, outcome.result, spec, timeout, emit, fresh)
        if worker_per_case and worker is not None:
            worker.close()
            worker = None
    if worker is not None:
        worker.close()
    return SuiteRun([results[n] for n in order], hello, started)


def _retry_alone(case: ConvCase, first: dict[str, Any], spec: WorkerSpec, timeout: float,
                 emit: Callable[[dict[str, Any]], None], fresh: Callable[[], Worker]) -> Worker | None:
    """Run a crashed case again alone in a fresh worker: deterministic or flaky?"""
    try:
        w: Worker | None = fresh()
    except WorkerStartError as exc:
        emit({**first, "retry": {"status": "error", "error": f"worker could not start: {exc}"},
              "reproducible": "unknown"})
        return None
    assert w is not None
    again = w.run_case(case, timeout)
    second = again.result
    same = needs_retry(second) or second.get("status") in ("error", "fail")
    merged = {**first, "retry": {k: second.get(k) for k in ("status", "error", "crash", "time_s") if k in second},
              "reproducible": "deterministic" if same else "flaky"}
    emit(merged)
    return w if again.worker_alive else None
