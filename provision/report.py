"""Run reports: one directory per run with report.json (versioned), junit.xml, report.md and report.html.

The JSON is the source of truth; the other three are rendered from it, so `provision report RUN`
re-renders a past run exactly.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

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


# ------------------------------------------------------------------------------------------------ Markdown


def _versions(side: dict[str, Any] | None) -> str:
    side = side or {}
    return ", ".join(f"{k} {v}" for k, v in side.items() if v) or "-"


def markdown(report: dict[str, Any]) -> str:
    run = report["run"]
    lines = [
        f"# provision {run['command']}: {report['summary']['hosts']} host(s)",
        "",
        f"Run `{run['id']}` on `{run['inventory']}`, {run['started']} → {run['finished']} "
        f"({run['duration_s']:.0f} s){' — check mode, nothing changed' if run.get('check_mode') else ''}. "
        f"Pins {report['tool']['pins_version']}, rocm-provision {report['tool']['version']}.",
        "",
        "| host | state | plan | GPU | before | after | verification | changed | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in report["hosts"]:
        gpus = "; ".join(f"{g.get('pci_id') or '?'} {g.get('gfx') or g.get('gfx_runtime') or ''}"
                         for g in h.get("gpus", []) if g.get("role") == "compute") or "-"
        verification = h.get("verification") or {}
        vtext = "-"
        if verification:
            s = verification.get("summary") or {}
            where = (verification.get("device") or {}).get("type")
            on = f" on {where}" if where else ""
            vtext = f"{verification.get('verdict')} ({s.get('pass', 0)}/{s.get('total', 0)} pass{on})"
            if verification.get("verified_at"):
                vtext += f", converged: last verified {verification['verified_at']}"
        lines.append(
            f"| {h['name']} | **{h['state']}** | {(h.get('plan') or {}).get('action', '-')} | {gpus} | "
            f"{_versions(h.get('before'))} | {_versions(h.get('after'))} | {vtext} | {h.get('changed', 0)} | "
            f"{h.get('duration_s', 0):.0f} s |"
        )
    lines.append("")
    for h in report["hosts"]:
        lines.append(f"## {h['name']}: {h['state']}")
        if h.get("reason"):
            lines.append(f"\n{h['reason']}\n")
        plan = h.get("plan") or {}
        for r in plan.get("reasons", []):
            lines.append(f"- {r}")
        for w in plan.get("warnings", []):
            lines.append(f"- ⚠ {w}")
        if plan.get("env"):
            lines.append("- env set: " + ", ".join(f"`{k}={v}`" for k, v in plan["env"].items()))
        if plan.get("env_remove"):
            lines.append("- env removed: " + ", ".join(f"`{k}`" for k in plan["env_remove"]))
        bad = [c for c in ((h.get("verification") or {}).get("cases") or []) if c["status"] not in ("pass", "skipped")]
        for c in bad[:20]:
            lines.append(f"- verification {c['status']}: `{c['name']}` {c.get('error') or ''}")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24;background:#f6f8fa}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin:0 0 .4rem}
.meta{color:#57606a;margin-bottom:1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1rem;border-top:6px solid #8c959f}
.card.done{border-top-color:#1a7f37}.card.fallback-applied{border-top-color:#0969da}
.card.failed{border-top-color:#cf222e}.card.unreachable{border-top-color:#cf222e}
.card.blocked{border-top-color:#bf8700}.card.skipped,.card.planned{border-top-color:#8c959f}
.state{font-weight:600}.muted{color:#57606a}ul{padding-left:1.1rem;margin:.3rem 0}
table{border-collapse:collapse;width:100%;background:#fff;margin-top:1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left}th{background:#eaeef2}
td.pass{color:#1a7f37}td.fail,td.crash,td.timeout,td.error{color:#cf222e;font-weight:600}
svg text{font-size:11px;font-family:inherit}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _card(h: dict[str, Any]) -> str:
    plan = h.get("plan") or {}
    items = "".join(f"<li>{_e(r)}</li>" for r in plan.get("reasons", []))
    items += "".join(f"<li class='muted'>⚠ {_e(w)}</li>" for w in plan.get("warnings", []))
    gpus = "<br>".join(
        f"{_e(g.get('pci_id') or '?')} {_e(g.get('name'))} "
        f"({_e(g.get('gfx') or g.get('gfx_runtime'))}, {_e(g.get('role'))})"
        for g in h.get("gpus", []))
    verification = h.get("verification") or {}
    vline = ""
    if verification:
        s = verification.get("summary") or {}
        where = ((verification.get("device") or {}).get("type") or "")
        vline = (f"<p>verification{' on ' + _e(where) if where else ''}: <b>{_e(verification.get('verdict'))}</b>"
                 f" — {_e(s.get('pass', 0))} pass, "
                 f"{_e(s.get('fail', 0))} fail, {_e(s.get('crash', 0))} crash of {_e(s.get('total', 0))}</p>")
    return (
        f"<div class='card {_e(host_state(h))}'><h2>{_e(h['name'])}</h2>"
        f"<p class='state'>{_e(h['state'])}</p>"
        + (f"<p>{_e(h.get('reason'))}</p>" if h.get("reason") and h.get("reason") != "; ".join(
            plan.get("reasons", [])) else "")
        + f"<p>plan: <b>{_e(plan.get('action', '-'))}</b></p><ul>{items}</ul>"
        f"<p class='muted'>{gpus}</p>"
        f"<p>before: {_e(_versions(h.get('before')))}<br>after: {_e(_versions(h.get('after')))}</p>"
        f"{vline}<p class='muted'>{_e(h.get('changed', 0))} changed, {_e(round(h.get('duration_s', 0)))} s</p></div>"
    )


def _chart(rows: list[tuple[str, str, float]]) -> str:
    """Horizontal bars of achieved TFLOP/s, one per (host, case); plain inline SVG, no scripts."""
    if not rows:
        return "<p class='muted'>No TFLOP/s were measured (no GPU ran the cases).</p>"
    rows = sorted(rows, key=lambda r: -r[2])[:40]
    top = max(r[2] for r in rows) or 1.0
    bar_h, label_w, width = 16, 360, 820
    parts = [f"<svg role='img' aria-label='TFLOP/s per case' width='{width}' height='{bar_h * len(rows) + 10}' "
             "xmlns='http://www.w3.org/2000/svg'>"]
    for i, (host, case, value) in enumerate(rows):
        y = 5 + i * bar_h
        w = max(1.0, (width - label_w - 70) * value / top)
        parts.append(f"<text x='0' y='{y + 12}'>{_e(host)}: {_e(case[:48])}</text>"
                     f"<rect x='{label_w}' y='{y + 2}' width='{w:.1f}' height='{bar_h - 4}' fill='#0969da'/>"
                     f"<text x='{label_w + w + 4:.1f}' y='{y + 12}'>{value:.2f}</text>")
    parts.append("</svg>")
    return "".join(parts)


def html_page(report: dict[str, Any]) -> str:
    run = report["run"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report["summary"]["by_state"].items()))
    rows = []
    chart_rows = []
    for h in report["hosts"]:
        for c in ((h.get("verification") or {}).get("cases") or []):
            frac = c.get("peak_fraction")
            status = _e(c["status"])
            share = f"{frac:.1%}" if isinstance(frac, float) else ""
            rows.append(
                f"<tr><td>{_e(h['name'])}</td><td>{_e(c['name'])}</td><td class='{status}'>{status}</td>"
                f"<td>{_e(round(c.get('time_s') or 0, 4))}</td><td>{_e(c.get('tflops'))}</td>"
                f"<td>{_e(share)}</td><td>{_e(c.get('error') or '')}</td></tr>")
            if c.get("tflops"):
                chart_rows.append((h["name"], c["name"], float(c["tflops"])))
    table = ("<table><thead><tr><th>host</th><th>case</th><th>status</th><th>time (s)</th><th>TFLOP/s</th>"
             "<th>of peak</th><th>error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
             if rows else "<p class='muted'>No verification results.</p>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>provision {_e(run['command'])} — {_e(run['id'])}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>provision {_e(run['command'])}: {_e(report['summary']['hosts'])} host(s) — {_e(counts)}</h1>"
        f"<p class='meta'>run {_e(run['id'])} · inventory {_e(run['inventory'])} · {_e(run['started'])} → "
        f"{_e(run['finished'])} ({_e(round(run['duration_s']))} s) · pins {_e(report['tool']['pins_version'])}"
        f"{' · check mode: nothing changed' if run.get('check_mode') else ''}</p>"
        f"<div class='cards'>{''.join(_card(h) for h in report['hosts'])}</div>"
        f"<h2 style='margin-top:1.5rem'>Verification</h2>{table}"
        f"<h2 style='margin-top:1.5rem'>Achieved TFLOP/s</h2>{_chart(chart_rows)}"
        "</body></html>\n"
    )
