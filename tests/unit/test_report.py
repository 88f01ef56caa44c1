"""Run reports: what a person and a CI system read after a run."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from provision import report
from tests.fleet_report import HOSTILE, fleet


def sample() -> dict:
    def host(name: str, state: str, action: str, verification: dict | None = None, reason: str = "") -> dict:
        return {"name": name, "state": state, "reason": reason, "changed": 3, "duration_s": 42.0,
                "plan": {"action": action, "reasons": [f"because {name}"], "warnings": [], "env": {}, "env_remove": []},
                "gpus": [{"pci_id": "1002:73a3", "name": "Radeon PRO W6800", "gfx": "gfx1030", "role": "compute"}],
                "before": {"rocm": "5.2.0"}, "after": {"rocm": "7.0.0", "torch": "2.8.0+rocm7.0.0.git64359f59"},
                "phases": [{"name": "preflight", "status": "ok", "duration_s": 2.0, "message": ""},
                           {"name": "stack", "status": "failed" if state.startswith("failed") else "ok",
                            "duration_s": 30.0, "message": "apt failed" if state.startswith("failed") else ""}],
                "verification": verification}

    cases = [{"name": "conv2d_k3_fp16_fwd", "status": "pass", "time_s": 0.01, "tflops": 12.5, "peak_fraction": 0.3},
             {"name": "conv2d_k5_fp32_wrw", "status": "crash", "time_s": 0.0, "tflops": None,
              "error": "Memory access fault by GPU node-1 (Agent handle: 0x55) on address 0x7f. "
                       "Reason: Page not present"}]
    return {
        "schema_version": 1,
        "tool": {"name": "rocm-provision", "version": "0.1.0", "pins_version": "2026.11.1"},
        "run": {"id": "20261126T000000Z-upgrade", "command": "upgrade", "inventory": "lab.ini",
                "started": "2026-11-26T00:00:00+00:00", "finished": "2026-11-26T00:05:00+00:00",
                "duration_s": 300.0, "check_mode": False},
        "summary": {"hosts": 3, "by_state": {"done": 1, "failed": 1, "blocked": 1}},
        "hosts": [
            host("ws-good", "done", "upgrade",
                 {"verdict": "pass", "summary": {"total": 1, "pass": 1}, "cases": cases[:1]}),
            host("ws-bad", "failed-at-stack", "upgrade", reason="apt failed"),
            host(f"ws-{HOSTILE}", "blocked", "blocked",
                 {"verdict": "fail", "summary": {"total": 2, "pass": 1, "crash": 1}, "cases": cases}, reason=HOSTILE),
        ],
    }


def test_exit_code_follows_host_states() -> None:
    doc = sample()
    assert report.exit_code(doc) == 1
    doc["hosts"] = doc["hosts"][:1]
    assert report.exit_code(doc) == 0


def test_files_are_written_private_and_reloadable(tmp_path: Path) -> None:
    paths = report.write(sample(), tmp_path / "run")
    assert sorted(p.name for p in paths) == sorted(report.REPORT_FILES)
    for p in paths:
        assert p.stat().st_mode & 0o077 == 0, p
    assert report.load(tmp_path / "run") == sample()


def test_junit_has_a_case_per_phase_and_per_verification_case(tmp_path: Path) -> None:
    root = ET.fromstring(report.junit(sample()))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    bad = suites["ws-bad"]
    assert bad.get("failures") == "1"
    assert [c.get("name") for c in bad.iter("testcase")] == ["preflight", "stack"]
    hostile = suites[f"ws-{HOSTILE}"]
    names = [c.get("name") for c in hostile.iter("testcase")]
    assert "conv2d_k5_fp32_wrw" in names and "plan" in names
    crash = next(c for c in hostile.iter("testcase") if c.get("name") == "conv2d_k5_fp32_wrw")
    assert "Memory access fault" in crash.find("failure").get("message")


def test_markdown_reads_host_by_host() -> None:
    text = report.markdown(sample())
    assert "| ws-bad | **failed-at-stack** |" in text
    assert "rocm 5.2.0" in text and "rocm 7.0.0" in text


def test_html_escapes_everything_from_hosts() -> None:
    page = report.html_page(sample())
    assert HOSTILE not in page
    assert html_escaped(HOSTILE) in page
    assert "<script" not in page  # self-contained and script-free


def html_escaped(text: str) -> str:
    return html.escape(text)


def test_load_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(Exception, match="unknown report schema"):
        report.load(tmp_path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"CONSOLE|Uncaught|SyntaxError", line)]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup installs it)")
def test_html_renders_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    # the detector itself must see a console error on a page that has one
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><html><body><script>console.error('boom'); undefinedCall();</script>"
                      "</body></html>")
    assert console_errors(chromium(broken, tmp_path, "--dump-dom").stderr)

    report.write(sample(), tmp_path / "run")
    page = tmp_path / "run" / "report.html"
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0
    assert not console_errors(dom.stderr), dom.stderr
    assert "ws-good" in dom.stdout and "failed-at-stack" in dom.stdout and "<svg" in dom.stdout
    shot = chromium(page, tmp_path, f"--screenshot={tmp_path / 'report.png'}", "--window-size=1280,1600")
    assert shot.returncode == 0 and (tmp_path / "report.png").stat().st_size > 10_000


def test_detection_floors_reach_markdown_and_html(tmp_path: Path) -> None:
    """The suite's worst floor per dtype and pass travels from its JSON through the host's verification
    into both summaries."""
    from provision import outcome

    suite = {"verdict": "pass", "summary": {"total": 2, "pass": 2}, "cases": [],
             "detection_floors": {"bf16": {"fwd": {"worst": 0.0442, "case": "c1", "checked": 3, "finite_only": 0,
                                                   "blind": 0}},
                                  "fp32": {"bwd_bias": {"worst": 0.0021, "case": "c2", "checked": 1, "finite_only": 0,
                                                        "blind": 0}}}}
    path = tmp_path / "convcheck.json"
    path.write_text(json.dumps(suite))
    verification = outcome._verification({"json": str(path), "verdict": "pass"})
    assert verification is not None and verification["detection_floors"] == suite["detection_floors"]
    doc = sample()
    doc["hosts"][0]["verification"] = verification
    text = report.markdown(doc)
    assert "| bf16 | ≤ 5 % | 4.42 % | - | - | - |" in text
    assert "| fp32 | ≤ 0.1 % | - | - | - | 0.21 % |" in text
    page = report.html_page(doc)
    assert "Detection floor" in page and ">4.42 %</td>" in page and ">0.21 %</td>" in page


# ------------------------------------------------------------------------------------ a fleet of hosts

def test_a_host_is_timed_by_its_own_tasks_and_a_pending_reboot_is_kept(tmp_path: Path) -> None:
    doc = fleet(tmp_path, 40)
    hosts = {h["name"]: h for h in doc["hosts"]}
    blocked = [h for h in doc["hosts"] if h["state"] == "blocked"]
    done = [h for h in doc["hosts"] if h["state"] == "done" and not h["converged"]]
    assert blocked and done
    # a blocked host stopped after preflight: its time is its own few seconds, not the run's quarter hour
    assert all(h["duration_s"] < 30 for h in blocked), [h["duration_s"] for h in blocked]
    assert all(h["duration_s"] > 300 for h in done)
    assert all(h["duration_s"] < doc["run"]["duration_s"] for h in doc["hosts"])
    assert all(h["duration_s"] <= h["span_s"] for h in doc["hosts"])  # waits for other hosts are not its own
    assert hosts["ws-03"]["reboot_pending"] and not hosts["ws-01"]["reboot_pending"]


def summary_hosts_html(page: str) -> list[str]:
    table = page.split("<table class='summary'", 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr class='a\d'><td><a href='#h\d+'>([^<]+)</a>", table)


def summary_hosts_md(text: str) -> list[str]:
    head = text.split("\n## ", 1)[0]
    return [line.split(" | ")[0].removeprefix("| ") for line in head.splitlines()
            if line.startswith("| ") and not line.startswith("| host |")]


def test_html_and_markdown_list_failures_first_then_blocked_then_pending_reboots(tmp_path: Path) -> None:
    doc = fleet(tmp_path, 200)
    page, text = report.html_page(doc), report.markdown(doc)
    by_name = {h["name"]: h for h in doc["hosts"]}
    order = summary_hosts_html(page)
    assert order == summary_hosts_md(text) and sorted(order) == sorted(by_name)
    ranks = [report.attention(by_name[n]) for n in order]
    assert ranks == sorted(ranks)
    states = [report.host_state(by_name[n]) for n in order]
    assert states[0] == "failed" and "unreachable" in states[:25] and states[-1] in ("done", "fallback-applied")
    first_pending = next(i for i, n in enumerate(order) if by_name[n]["reboot_pending"])
    assert all(s in ("failed", "unreachable", "blocked") for s in states[:first_pending])
    # the pending reboot stands out: a notice above the table naming the count, a badge on each such row
    pending = sum(1 for h in doc["hosts"] if h["reboot_pending"])
    assert pending and f"Reboot pending on {pending} host(s)" in page.split("<table", 1)[0]
    assert page.count("<span class='badge reboot'>⟳ reboot pending</span>") == 2 * pending  # row and card
    assert f"**Reboot pending on {pending} host(s)**" in text
    # a failed host's reason is on the line under its row; the card ids are numbers, never host names
    assert "E: Sub-process /usr/bin/dpkg returned an error code (1)" in page.split("</table>", 1)[0]
    assert HOSTILE not in page and html_escaped(HOSTILE) in page and "<script" not in page
    assert HOSTILE not in text


def test_the_matrix_puts_failing_hosts_and_cases_first_and_folds_hosts_that_passed(tmp_path: Path) -> None:
    doc = fleet(tmp_path, 200)
    page = report.html_page(doc)
    matrix = page.split("<table class='matrix'>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td class='host' title='[^']*'><a href='#h\d+'>([^<]+)</a></td>(.*?)</tr>", matrix)
    failing = {h["name"] for h in doc["hosts"] if any(c["status"] in report.NOT_PASSED for c in report.cases(h))}
    assert {name for name, _ in rows} == failing and len(failing) >= 5
    for _, cells in rows:  # every failing host fails the miscompared case; it is column 1, its cell a link
        assert cells.startswith("<td class='c-fail' title=") and "forward: max |diff|" in cells.split("</td>")[0]
    head = page.split("<table class='matrix'>", 1)[1].split("</thead>", 1)[0]
    headers = re.findall(r"<th title='([^']+)'>(\d+)</th>", head)
    assert headers[0][1] == "1" and headers[0][0].startswith("repro-miopen2522") and len(headers) == 30
    passed = [h for h in doc["hosts"] if report.cases(h) and h["name"] not in failing]
    assert f"<summary>{len(passed)} host(s) passed every case: show them</summary>" in page
    # each host's cases are on demand in its card; its failing ones are listed in full
    assert page.count("<summary>all 30 case(s)</summary>") == len(failing) + len(passed)
    assert "Memory access fault by GPU node-1" in page.split("id='hosts'", 1)[1]


def test_a_small_run_shows_every_host_in_the_matrix_and_says_what_has_none(tmp_path: Path) -> None:
    page = report.html_page(fleet(tmp_path, 4))
    assert "passed every case: show them" not in page
    assert page.count("<tr><td class='host'") == 3  # ws-4 failed at stack, before verification
    assert "1 host(s) have no per-case results here" in page


def probe(page: Path, tmp_path: Path, width: int, height: int) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """Load a copy of the report with a measuring script appended (the report itself has no script) and read
    what the first viewport shows, from the DOM headless Chromium laid out."""
    measure = """<script>
const vh = innerHeight, table = document.querySelector('table.summary'), box = table.getBoundingClientRect();
const rows = [...table.querySelectorAll('tbody tr:not(.why)')];
const out = {vw: innerWidth, vh, top: box.top, right: box.right, scrollY, scrollWidth:
  document.documentElement.scrollWidth, rows: rows.length,
  visible: rows.filter(r => r.getBoundingClientRect().bottom <= vh).map(r => r.cells[0].textContent),
  headerVisible: table.tHead.getBoundingClientRect().bottom <= vh};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""
    copy = tmp_path / "probe.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", measure + "</body>"), encoding="utf-8")
    dom = chromium(copy, tmp_path, "--dump-dom", f"--window-size={width},{height}")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    return json.loads(html.unescape(found.group(1))), dom


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup installs it)")
@pytest.mark.parametrize("count", [4, 200])
def test_a_fleet_report_reads_at_the_top_in_headless_chromium(tmp_path: Path, count: int) -> None:
    doc = fleet(tmp_path, count)
    report.write(doc, tmp_path / "run")
    page = tmp_path / "run" / "report.html"
    source = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 5_000_000, page.stat().st_size
    # one self-contained file: no script, no stylesheet or image fetched from anywhere
    assert "<script" not in source and "<link" not in source and " src=" not in source and "@import" not in source

    seen, dom = probe(page, tmp_path, 1280, 800)
    assert not console_errors(dom.stderr), dom.stderr
    assert seen["scrollY"] == 0 and seen["rows"] == count
    assert seen["top"] < seen["vh"] / 3 and seen["headerVisible"], seen  # the summary starts near the top
    assert seen["scrollWidth"] <= seen["vw"] and seen["right"] <= seen["vw"], seen  # no sideways scrolling
    by_name = {h["name"]: h for h in doc["hosts"]}
    assert len(seen["visible"]) >= min(count, 8), seen
    assert report.host_state(by_name[seen["visible"][0]]) == "failed", seen  # a failure is the first row


def provision(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PROVISION_RUNS_DIR=str(runs), COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_provision_report_summarises_and_renders_only_when_asked(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "20261126T060000Z-upgrade"
    report.write(fleet(tmp_path, 12), run_dir)
    html_file = run_dir / "report.html"
    html_file.write_text("an older rendering\n")
    source = (run_dir / "report.json").stat().st_mtime
    os.utime(html_file, (source - 3600, source - 3600))
    (run_dir / "junit.xml").unlink()

    summary = provision("report", runs=runs)  # latest
    assert summary.returncode == 1  # a host failed in that run
    lines = [line for line in summary.stdout.splitlines() if line.startswith("| ws-")]
    assert lines[0].startswith("| ws-04 | **failed-at-stack**") and len(lines) == 12, summary.stdout
    assert "junit.xml, report.html missing or older than report.json" in " ".join(summary.stderr.split())
    assert "--render" in summary.stderr
    assert html_file.read_text() == "an older rendering\n" and not (run_dir / "junit.xml").exists()  # untouched

    rendered = provision("report", str(run_dir), "--render", runs=runs)
    assert rendered.returncode == 1 and "--render" not in rendered.stderr
    assert summary_hosts_html(html_file.read_text())[0] == "ws-04" and (run_dir / "junit.xml").is_file()
    assert json.loads(provision("report", run_dir.name, "--json", runs=runs).stdout)["summary"]["hosts"] == 12
