"""Run the project's playbooks through ansible-runner and follow them host by host from its events."""

from __future__ import annotations

import os
import shlex
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError

if TYPE_CHECKING:
    from provision.ansible_options import AnsibleOptions

PHASES = {  # role name -> phase shown to the user
    "rocm_preflight": "preflight",
    "rocm_remove": "remove",
    "rocm_install": "stack",
    "torch_venv": "torch",
    "fallback_profile": "fallback",
    "conv_verify": "verify",
}


RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")
STAGE_ENTRIES = {"rocm_install:stage", "torch_venv:stage"}  # include_role entry points that only stage


def phase_of(role: str, task_path: str, task: str, entry: str = "") -> str | None:
    """The user-facing phase of a task: preflight, stage, remove, driver, reboot, stack, torch, fallback, verify.

    `entry` is the role entry point the host last entered (`role:tasks_from`, from the include_role result):
    stage.yml includes the same repo.yml as main.yml, so the file alone cannot tell staging from installing."""
    if entry in STAGE_ENTRIES and entry.startswith(f"{role}:"):
        return "stage"
    if role == "rocm_install":
        lowered = f"{task_path} {task}".lower()
        for word in ("stage", "reboot", "driver"):
            if word in lowered:
                return word
    return PHASES.get(role)


COLLECTION = ("rocm", "provision")  # the Ansible collection the playbooks and roles form (galaxy.yml)


def ansible_root() -> Path:
    """Directory holding ansible.cfg and collections/, the collections path where the rocm.provision collection
    (playbooks/, roles/, plugins/) lies: inside the installed package, or the checkout (a link tree there)."""
    packaged = Path(__file__).parent / "ansible"
    checkout = Path(__file__).parent.parent
    for root in (packaged, checkout):
        if (root / "ansible.cfg").is_file() and (_collection_dir(root) / "playbooks").is_dir():
            return root
    raise ProvisionError("the playbooks are missing from this installation; reinstall rocm-provision")


def _collection_dir(root: Path) -> Path:
    return root.joinpath("collections", "ansible_collections", *COLLECTION)


def collection_root() -> Path:
    """The rocm.provision collection's root: galaxy.yml, meta/, playbooks/, roles/, plugins/."""
    return _collection_dir(ansible_root())


def short_role(name: str) -> str:
    """A role's own name: `rocm.provision.rocm_install` -> `rocm_install` (events name collection roles by FQCN)."""
    prefix = ".".join(COLLECTION) + "."
    return name.removeprefix(prefix)


def _owner_only(root: Path) -> None:
    """Take group and other permissions off everything under a run directory (Ansible's fact cache writes its
    files 0644 whatever the umask): facts, command output and events are for the run's owner only."""
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                path.chmod(stat.S_IMODE(mode) & ~0o077)
        except OSError:
            continue


def runs_dir() -> Path:
    """The runs directory, made 0700 when it does not exist yet. An existing one keeps its mode: it may be a
    directory a team shares on purpose, and every run directory inside is 0700 on its own."""
    base = Path(os.environ.get("PROVISION_RUNS_DIR", Path.home() / ".local" / "state" / "rocm-provision" / "runs"))
    if not base.is_dir():
        base.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            base.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another run made it meanwhile
        else:
            os.chmod(base, 0o700)  # whatever the umask
    return base


@dataclass
class HostProgress:
    name: str
    phase: str = "waiting"
    task: str = ""
    status: str = "pending"  # pending | running | ok | failed | unreachable | ended
    started: float | None = None
    finished: float | None = None
    changed: int = 0
    message: str = ""
    entry: str = ""  # the role entry point last included for this host, e.g. rocm_install:stage
    phases: list[dict[str, Any]] = field(default_factory=list)  # [{name, status, start, end, message}]
    # the host's own time, from the start/end Ansible stamps on each task result (ansible-runner's events):
    # first task started, last task ended, and the seconds its tasks ran (waits for other hosts excluded)
    first_start: datetime | None = None
    last_end: datetime | None = None
    busy_s: float = 0.0
    last_seen: float | None = None  # monotonic time of its last task result (the fallback without stamps)

    def enter_phase(self, name: str, now: float) -> None:
        if self.phases and self.phases[-1]["name"] == name and self.phases[-1]["end"] is None:
            return
        self.close_phase("ok", now)
        self.phases.append({"name": name, "status": "running", "start": now, "end": None, "message": "",
                            "busy": 0.0})
        self.phase = name

    def close_phase(self, status: str, now: float, message: str = "") -> None:
        if self.phases and self.phases[-1]["end"] is None:
            self.phases[-1].update(status=status, end=max(now, self.phases[-1]["start"]), message=message)

    def phase_records(self) -> list[dict[str, Any]]:
        """Each phase: `duration_s` from entering it to leaving it (waits for other hosts included), `busy_s` the
        seconds this host's tasks in it ran."""
        return [{"name": p["name"], "status": p["status"], "message": p["message"],
                 "duration_s": round((p["end"] or p["start"]) - p["start"], 2),
                 "busy_s": round(p.get("busy", 0.0), 2)} for p in self.phases]

    def record_result(self, data: dict[str, Any], now: float) -> None:
        """Note one task result's timing (`start`, `end`, `duration` of a runner_on_ok/failed/skipped/unreachable
        event)."""
        self.last_seen = now
        start, end = _stamp(data.get("start")), _stamp(data.get("end"))
        if start is not None and (self.first_start is None or start < self.first_start):
            self.first_start = start
        if end is not None and (self.last_end is None or end > self.last_end):
            self.last_end = end
        duration = data.get("duration")
        if isinstance(duration, int | float) and duration > 0:
            self.busy_s += float(duration)
            if self.phases:
                self.phases[-1]["busy"] = self.phases[-1].get("busy", 0.0) + float(duration)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def own_duration(self) -> float:
        """The seconds Ansible ran this host's tasks, summed from their start/end stamps: time spent waiting for
        other hosts (the linear strategy runs each task on every host before the next) is not this host's, and
        a host that stopped early (blocked, converged, failed) is not charged with the rest of the run."""
        if self.first_start is not None:
            return self.busy_s
        return self.elapsed

    @property
    def span(self) -> float:
        """Seconds from this host's first task start to its last task end (waits for other hosts included)."""
        if self.first_start is not None and self.last_end is not None:
            return max(0.0, (self.last_end - self.first_start).total_seconds())
        return self.elapsed


def _stamp(value: Any) -> datetime | None:
    """An ISO 8601 time stamp from an event (ansible-runner writes them with a UTC offset), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@dataclass
class RunResult:
    run_dir: Path
    rc: int
    status: str
    hosts: dict[str, HostProgress]
    stats: dict[str, Any] = field(default_factory=dict)  # set_stats data (artifact_data)
    playbook_stats: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


class PlaybookRun:
    """One ansible-runner run. `on_change` is called (from the runner's thread) after each host update."""

    def __init__(self, playbook: str, inventory: Path, *, hosts: list[str], limit: str | None = None,
                 forks: int | None = None, extravars: dict[str, Any] | None = None, check: bool = False,
                 on_change: Callable[[HostProgress], None] | None = None,
                 options: AnsibleOptions | None = None) -> None:
        self.playbook = playbook
        self.inventory = inventory.resolve()
        self.limit = limit
        self.forks = forks
        self.extravars = extravars or {}
        self.check = check
        self.on_change = on_change
        self.options = options  # -e, vault, -K, -v: passed on to ansible-playbook as the user gave them
        self.hosts = {h: HostProgress(h) for h in hosts}
        self.stats: dict[str, Any] = {}
        self.playbook_stats: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.interrupted = False
        self.run_dir = _new_run_dir(Path(playbook).stem)

    def cancel(self) -> None:
        self._cancel.set()

    def _host(self, name: str) -> HostProgress:
        with self._lock:
            return self.hosts.setdefault(name, HostProgress(name))

    def _event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.stats = data.get("artifact_data") or {}
            self.playbook_stats = {k: data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped")}
            return True
        host_name = data.get("host")
        if not host_name:
            return True
        host = self._host(host_name)
        now = time.monotonic()
        role = short_role(data.get("role") or "")
        task = (data.get("task") or "").removeprefix(f"{data.get('resolved_role') or role} : ").removeprefix(
            f"{role} : ")
        if kind == "runner_on_start":
            host.started = host.started or now
            if host.status in ("failed", "unreachable"):
                host.task = task  # an `always:` clean-up after the failure: the host stays where it failed
            else:
                host.status, host.task = "running", task
                host.enter_phase(phase_of(role, str(data.get("task_path") or ""), task, host.entry) or host.phase, now)
        if kind in RESULT_EVENTS:
            host.record_result(data, now)
        if kind == "runner_on_ok":
            res = data.get("res") or {}
            host.changed += int(bool(res.get("changed")))
            include = res.get("include_args") or {}
            if isinstance(include, dict) and include.get("name"):
                host.entry = f"{short_role(str(include['name']))}:{include.get('tasks_from') or 'main'}"
        elif kind == "runner_retry":
            # A polled long task (the workaround search): show how far it got in the live table.
            res = data.get("res") or {}
            note = _poll_note(res)
            if note:
                host.task = f"{task}: {note}"
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            host.status, host.finished = "failed", now
            host.message = _message(data.get("res") or {})
            host.close_phase("failed", now, host.message)
        elif kind == "runner_on_unreachable":
            host.status, host.finished = "unreachable", now
            host.message = _message(data.get("res") or {})
            host.close_phase("unreachable", now, host.message)
        if self.on_change:
            self.on_change(host)
        return True

    def run(self) -> RunResult:
        import ansible_runner

        root = ansible_root()
        playbooks = collection_root() / "playbooks"
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmdline = ["--check", "--diff"] if self.check else []
        if self.options is not None:
            cmdline += self.options.cmdline()
        envvars = {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            # the playbooks name roles, modules and filters rocm.provision.*: this installation's collection first
            "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
            "ANSIBLE_NOCOLOR": "1",
            # the ansible-playbook that sits beside this Python, so the roles' filter imports this package
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **(self.options.envvars() if self.options is not None else {}),
        }
        # ansible-runner writes artifacts (stdout, job events, fact cache) with the process umask: they hold
        # hosts' facts and command output, so they are for the run's owner only, like the run directory.
        playbook = self.playbook if Path(self.playbook).is_absolute() else str(playbooks / self.playbook)
        previous_umask = os.umask(0o077)
        try:
            thread, runner = ansible_runner.run_async(
                private_data_dir=str(self.run_dir),
                project_dir=str(playbooks),
                playbook=playbook,
                inventory=str(self.inventory),
                limit=self.limit,
                forks=self.forks,
                extravars=self.extravars or None,
                envvars=envvars,
                cmdline=" ".join(shlex.quote(arg) for arg in cmdline) or None,
                # prompted vault / become passwords answer ansible-playbook's own prompts (held in memory only)
                passwords=(self.options.passwords() if self.options is not None else None) or None,
                event_handler=self._event,
                cancel_callback=self._cancel.is_set,
                quiet=True,
                suppress_env_files=True,
            )
            try:
                while thread.is_alive():
                    thread.join(timeout=0.2)
            except KeyboardInterrupt:
                # Ctrl-C / SIGTERM: let ansible-runner stop ansible-playbook, then record where each host stood.
                self.interrupted = True
                self._cancel.set()
                while thread.is_alive():
                    try:
                        thread.join(timeout=0.5)
                    except KeyboardInterrupt:
                        continue
        finally:
            # the process's umask is the caller's again however the run ended (an exception included)
            os.umask(previous_umask)
        _owner_only(self.run_dir)
        now = time.monotonic()
        if self.interrupted:
            for host in self.hosts.values():
                if host.status == "running":
                    host.status, host.finished = "failed", now
                    host.message = f"interrupted during {host.phase} ({host.task})"
                    host.close_phase("failed", now, host.message)
        for host in self.hosts.values():
            if host.status == "running":
                # its last task result, not the end of the run: a host the later plays left out stopped there
                end = host.last_seen or now
                host.status, host.finished = "ok", end
                host.close_phase("ok", end)
            if host.status == "ok" and host.name in self.playbook_stats.get("dark", {}):
                host.status = "unreachable"
        return RunResult(self.run_dir, runner.rc if runner.rc is not None else 1, runner.status, self.hosts,
                         self.stats, self.playbook_stats, self.interrupted)


def _new_run_dir(stem: str) -> Path:
    """A run directory of its own (created now), even when runs start within the same second."""
    base = runs_dir()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        path = base / (f"{stamp}-{stem}" if n == 1 else f"{stamp}.{n}-{stem}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise ProvisionError(f"cannot make a new run directory under {base}: too many runs this second")


GENERIC_MESSAGES = ("non-zero return code", "One or more items failed", "MODULE FAILURE")


def _poll_note(res: dict[str, Any]) -> str:
    """'trial 12 (solver in direct), 53 s' from a polled task's progress (the last JSON line it printed)."""
    lines = [ln for ln in str(res.get("stdout") or "").splitlines() if ln.startswith("{")]
    if not lines:
        return f"{res.get('attempts', '?')} polls" if res.get("attempts") else ""
    import json

    try:
        last = json.loads(lines[-1])
    except ValueError:
        return ""
    if last.get("type") == "workaround-trial":
        return f"trial {last.get('trial')} ({last.get('purpose')}), {last.get('elapsed_s')} of {last.get('limit_s')} s"
    return ""


def _message(res: dict[str, Any]) -> str:
    from provision.redact import text as redact

    return redact(_raw_message(res))


def _raw_message(res: dict[str, Any]) -> str:
    """One line saying why a task failed: the module's message, or for a command or a loop the line of its
    output that names the error (apt's `E:` lines, a GPG error) rather than "non-zero return code"."""
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            found = _raw_message(item)
            if found:
                return found
    msg = str(res.get("msg") or "").strip()
    if msg and not msg.startswith(GENERIC_MESSAGES):
        # a module's own message is kept whole up to 1500 characters: a refusal names files and sha256s
        return msg.splitlines()[0][:1500]
    output = str(res.get("stderr") or res.get("module_stderr") or res.get("stdout") or "")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("W: GPG error", "E:", "ERROR:", "error:"):
        picked = [line for line in lines if line.startswith(prefix)]
        if picked:
            return picked[0][:300]
    text = msg or (lines[-1] if lines else "")
    return text.splitlines()[0][:300] if text else ""
