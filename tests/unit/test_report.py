"""Run reports: what a person and a CI system read after a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from provision import report

HOSTILE = "<script>alert('x')</script>"


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
    import html

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
    assert "Detection floor" in page and "<td>4.42 %</td>" in page
