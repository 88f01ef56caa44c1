"""Run reports: one directory per run with report.json (versioned), junit.xml, report.md and report.html.

The JSON is the source of truth; the other three are rendered from it (the HTML by provision.report_html), so
`provision report RUN --render` re-renders a past run exactly.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from provision.convcheck import floors

SCHEMA_VERSION = 1
STATES = ("done", "fallback-applied", "failed", "unreachable", "blocked", "skipped", "planned")
REPORT_FILES = ("report.json", "junit.xml", "report.md", "report.html")


def host_state(host: dict[str, Any]) -> str:
    """The family of a host's state: `failed-at-stack` counts as `failed`."""
    state = str(host.get("state", ""))
    return "failed" if state.startswith("failed") else state


def summarise(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    by_state: dict[str, int] = {}
    for host in hosts:
        by_state[host_state(host)] = by_state.get(host_state(host), 0) + 1
    return {"hosts": len(hosts), "by_state": by_state}


def exit_code(report: dict[str, Any]) -> int:
    """0: every host done, fallback as planned, or blocked/skipped as planned; 1: a host failed or was unreachable."""
    return 1 if any(host_state(h) in ("failed", "unreachable") for h in report["hosts"]) else 0


def write(report: dict[str, Any], run_dir: Path) -> list[Path]:
    """Write the four files, each atomically, readable by the owner only."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from provision.redact import deep

    report = deep(report)
    rendered = {
        "report.json": json.dumps(report, indent=1, sort_keys=False) + "\n",
        "junit.xml": junit(report),
        "report.md": markdown(report),
        "report.html": html_page(report),
    }
    paths = []
    for name, text in rendered.items():
        path = run_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def stale_files(run_dir: Path) -> list[str]:
    """The rendered files of a run that are missing or older than its report.json."""
    source = (run_dir / "report.json").stat().st_mtime
    return [name for name in REPORT_FILES[1:]
            if not (run_dir / name).is_file() or (run_dir / name).stat().st_mtime < source]


def load(run_dir: Path) -> dict[str, Any]:
    from provision.errors import InputError
    from provision.safeinput import read_bytes

    path = run_dir / "report.json" if run_dir.is_dir() else run_dir
    try:
        data = json.loads(read_bytes(path, "run report", 256 * 1024 * 1024).decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable run report ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: unknown report schema (expected schema_version {SCHEMA_VERSION})")
    return data


# ------------------------------------------------------------------------------------------------ JUnit


def junit(report: dict[str, Any]) -> str:
    """A testsuite per host: a testcase per phase, and one per verification case."""
    suites = ET.Element("testsuites", name=f"provision {report['run']['command']}")
    for host in report["hosts"]:
        suite = ET.SubElement(suites, "testsuite", name=host["name"])
        cases = 0
        failures = 0
        skipped = 0
        for phase in host.get("phases", []):
            case = ET.SubElement(suite, "testcase", classname=f"{host['name']}.phase", name=phase["name"],
                                 time=f"{phase.get('duration_s') or 0:.3f}")
            cases += 1
            if phase["status"] in ("failed", "unreachable"):
                failures += 1
                ET.SubElement(case, "failure", message=phase.get("message") or phase["status"])
        if host_state(host) in ("blocked", "skipped"):
            case = ET.SubElement(suite, "testcase", classname=f"{host['name']}.phase", name="plan")
            ET.SubElement(case, "skipped", message=host.get("reason") or host["state"])
            cases += 1
            skipped += 1
        for vcase in ((host.get("verification") or {}).get("cases") or []):
            case = ET.SubElement(suite, "testcase", classname=f"{host['name']}.verify", name=vcase["name"],
                                 time=f"{vcase.get('time_s') or 0:.3f}")
            cases += 1
            if vcase["status"] == "skipped":
                ET.SubElement(case, "skipped", message=vcase.get("error") or "skipped")
                skipped += 1
            elif vcase["status"] != "pass":
                ET.SubElement(case, "failure", message=f"{vcase['status']}: {vcase.get('error') or ''}"[:500])
                failures += 1
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("skipped", str(skipped))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# ------------------------------------------------------------------------------------------------ Summary
# Shared by the Markdown and HTML reports: the order hosts are listed in and the short texts of the summary.

ATTENTION = {"failed": 0, "unreachable": 1, "blocked": 2, "reboot-pending": 3, "skipped": 4, "planned": 5,
             "fallback-applied": 6, "done": 7}
NOT_PASSED = ("fail", "crash", "timeout", "error")


def attention(host: dict[str, Any]) -> int:
    """How soon a reader must look at a host: failed and unreachable first, then blocked, then a pending reboot."""
    state = host_state(host)
    if host.get("reboot_pending") and state not in ("failed", "unreachable", "blocked"):
        return ATTENTION["reboot-pending"]
    return ATTENTION.get(state, len(ATTENTION))


def ordered(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hosts failures first (see `attention`), then by name."""
    return sorted(hosts, key=lambda h: (attention(h), str(h.get("name"))))


def reboot_pending(hosts: list[dict[str, Any]]) -> list[str]:
    return [str(h["name"]) for h in ordered(hosts) if h.get("reboot_pending")]


def cases(host: dict[str, Any]) -> list[dict[str, Any]]:
    return list((host.get("verification") or {}).get("cases") or [])


def counts(host: dict[str, Any]) -> dict[str, int]:
    """A host's verification counts by status, with `total`: from its cases, else from the recorded summary."""
    listed = cases(host)
    if listed:
        found: dict[str, int] = {}
        for c in listed:
            found[str(c.get("status"))] = found.get(str(c.get("status")), 0) + 1
        return found | {"total": len(listed)}
    summary = (host.get("verification") or {}).get("summary") or {}
    found = {k: int(v) for k, v in summary.items() if isinstance(v, int | float) and k != "total"}
    total = summary.get("total")
    return found | {"total": int(total) if isinstance(total, int | float) else sum(found.values())}


def verification_text(host: dict[str, Any]) -> str:
    """`pass (30/30 pass on cpu)`, `fail (27/30 pass: 2 crash, 1 fail)`; the device only when it is not a GPU."""
    verification = host.get("verification") or {}
    if not verification:
        return "-"
    n = counts(host)
    where = (verification.get("device") or {}).get("type")
    on = f" on {where}" if where and where != "cuda" else ""
    if verification.get("simulated"):
        on += ", SIMULATED GPU runtime (lab)"
    bad = ", ".join(f"{n[s]} {s}" for s in (*NOT_PASSED, "skipped") if n.get(s))
    text = f"{verification.get('verdict')} ({n.get('pass', 0)}/{n.get('total', 0)} pass{on}{': ' + bad if bad else ''})"
    if verification.get("verified_at"):
        text += f", converged: last verified {verification['verified_at']}"
    return text


def gpu_text(host: dict[str, Any]) -> str:
    return "; ".join(f"{g.get('pci_id') or '?'} {g.get('gfx') or g.get('gfx_runtime') or ''}".strip()
                     for g in host.get("gpus") or [] if g.get("role") == "compute") or "-"


def _short_torch(version: str) -> str:
    """`2.8.0+rocm7.0.0.git64359f59` -> `2.8.0+rocm7.0.0` (the full version is in the host's details)."""
    head, sep, tail = version.partition(".git")
    return head if sep and all(ch in "0123456789abcdef" for ch in tail) else version


def change_text(host: dict[str, Any]) -> str:
    """Before -> after in a few words: `ROCm 5.2.0 → 7.0.0, torch 2.8.0+rocm7.0.0`, `ROCm 5.2.0 (kept)`."""
    before, after = host.get("before") or {}, host.get("after") or {}
    if not (before or after or host.get("plan")):
        return "-"  # never preflighted (unreachable): nothing is known
    b, a = before.get("rocm"), after.get("rocm")
    if b and a:
        rocm = f"ROCm {b} (kept)" if a == b else f"ROCm {b} → {a}"
    elif a:
        rocm = f"ROCm none → {a}"
    elif b:
        rocm = f"ROCm {b}"
    else:
        rocm = "no ROCm"
    torch = after.get("torch")
    return f"{rocm}, torch {_short_torch(str(torch))}" if torch else rocm


def duration_text(seconds: Any) -> str:
    """`42 s`, `6 m 05 s`, `1 h 02 m`."""
    s = round(float(seconds or 0))
    if s < 100:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} m"


def state_text(host: dict[str, Any]) -> str:
    return str(host.get("state")) + (", reboot pending" if host.get("reboot_pending") else "")


# ------------------------------------------------------------------------------------------------ Markdown


def versions_text(side: dict[str, Any] | None) -> str:
    side = side or {}
    return ", ".join(f"{k} {v}" for k, v in side.items() if v) or "-"


def _md(value: Any) -> str:
    """Text from hosts made safe in a Markdown table cell or line: no pipes, HTML or line breaks of its own."""
    text = " ".join(str("" if value is None else value).split())
    return html.escape(text, quote=False).replace("|", "\\|")
def wheel_notes(h: dict[str, Any]) -> list[str]:
    """The venv's Python source and the staged wheel set (sha256 of every file in report.json)."""
    notes = []
    python = h.get("python") or {}
    if python.get("source") and not python.get("problem"):
        notes.append(f"Python {python.get('version')}: {python.get('source')}"
                     + (f" ({python['note']})" if python.get("note") else ""))
    wheels = h.get("wheel_set") or {}
    if wheels:
        notes.append(f"wheel set for Python {wheels.get('python_version')}: {wheels.get('pinned')} pinned file(s) "
                     f"from {wheels.get('index_url')}, {wheels.get('dependencies')} dependencies from "
                     f"{wheels.get('pypi_index_url')}, sha256 of each in report.json")
        if wheels.get("python_tag_note"):
            notes.append(f"lab: {wheels['python_tag_note']}")
    return notes


def markdown(report: dict[str, Any]) -> str:
    """The summary table (failures first, then pending reboots, then the rest) and a section per host."""
    run = report["run"]
    hosts = ordered(report["hosts"])
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(report["summary"]["by_state"].items(),
                                                       key=lambda kv: ATTENTION.get(kv[0], 99)))
    check = " — check mode, nothing changed" if run.get("check_mode") else ""
    lines = [
        f"# provision {run['command']}: {report['summary']['hosts']} host(s)",
        "",
        f"Run `{run['id']}` on `{_md(run['inventory'])}`, {run['started']} → {run['finished']} "
        f"({duration_text(run['duration_s'])} in all){check}. "
        f"Pins {report['tool']['pins_version']}, rocm-provision {report['tool']['version']}. Hosts: {by_state}.",
        "",
    ]
    pending = reboot_pending(hosts)
    if pending:
        lines += [f"**Reboot pending on {len(pending)} host(s)**: the new amdgpu driver loads only after a reboot "
                  f"(not allowed in this run): {_md(', '.join(pending))}.", ""]
    lines += [
        "| host | state | plan | GPU | before → after | verification | changed | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in hosts:
        state = f"**{_md(h['state'])}**" + (" ⟳ **reboot pending**" if h.get("reboot_pending") else "")
        lines.append(
            f"| {_md(h['name'])} | {state} | {_md((h.get('plan') or {}).get('action', '-'))} | {_md(gpu_text(h))} | "
            f"{_md(change_text(h))} | {_md(verification_text(h))} | {h.get('changed', 0)} | "
            f"{duration_text(h.get('duration_s'))} |"
        )
    lines.append("")
    for h in hosts:
        lines.append(f"## {_md(h['name'])}: {_md(state_text(h))}")
        if h.get("reason"):
            lines.append(f"\n{_md(h['reason'])}\n")
        for note in h.get("notes") or []:
            lines.append(f"- ⚠ {_md(note)}")
        plan = h.get("plan") or {}
        for r in plan.get("reasons", []):
            lines.append(f"- {_md(r)}")
        for w in plan.get("warnings", []):
            lines.append(f"- ⚠ {_md(w)}")
        if plan.get("env"):
            lines.append("- env set: " + ", ".join(f"`{_md(k)}={_md(v)}`" for k, v in plan["env"].items()))
        if plan.get("env_remove"):
            lines.append("- env removed: " + ", ".join(f"`{_md(k)}`" for k in plan["env_remove"]))
        for note in wheel_notes(h):
            lines.append(f"- {_md(note)}")
        if h.get("old_venvs"):
            lines.append("- users' venvs with PyTorch for ROCm older than 6.2 (outside amdgpu 30.10's user-space "
                         "window, left untouched): " + ", ".join(f"`{_md(v['venv'])}` (torch {_md(v['torch'])})"
                                                         for v in h["old_venvs"]))
        lines.append(f"- before: {_md(versions_text(h.get('before')))}; after: {_md(versions_text(h.get('after')))}")
        lines.append(f"- own time {duration_text(h.get('duration_s'))} (first task to last: "
                     f"{duration_text(h.get('span_s', h.get('duration_s')))}), {h.get('changed', 0)} changed")
        search = h.get("workaround") or {}
        if search:
            lines.append(f"- workaround search: {_md(search.get('status'))}, {search.get('trials')} trials, "
                         f"{search.get('seconds')} s, MIOpen {_md(search.get('miopen_release') or '?')}; report "
                         f"{_md(search.get('json'))}")
            for case, switches in (search.get("fixes") or {}).items():
                lines.append(f"  - `{_md(case)}` fixed by " + ", ".join(f"`{_md(s)}=0`" for s in switches))
        bad = [c for c in cases(h) if c.get("status") in NOT_PASSED]
        for c in bad[:20]:
            lines.append(f"- verification {_md(c['status'])}: `{_md(c['name'])}` {_md(c.get('error') or '')}")
        if len(bad) > 20:
            lines.append(f"- … {len(bad) - 20} more (report.json, report.html)")
        detection = (h.get("verification") or {}).get("detection_floors")
        if detection:
            lines += ["", "Detection floor: the largest uniform relative error of a result that a checked pass "
                      "could miss (worst per dtype and pass):", "", *floors.markdown_lines(detection)]
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ HTML


def html_page(report: dict[str, Any]) -> str:
    from provision.report_html import page

    return page(report)
