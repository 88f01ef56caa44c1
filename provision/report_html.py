"""The HTML run report: one self-contained page (inline CSS, no scripts) that reads the same for 4 hosts or 400.

Top to bottom: the run and its counts, a pending-reboot notice, the summary table (a row per host, failures
first), the verification as a host × case matrix (failing hosts and cases first; a cell's title says the case,
status and error; all-pass hosts folded into a <details> when there are many), a card per host in the same order
(failing cases in full, all cases in a <details>), and the achieved TFLOP/s. Every text from a host or the
inventory goes through `_e` (HTML-escaped, quotes included); element ids are numbers, never host names.
"""

from __future__ import annotations

import html
from typing import Any

from provision.convcheck import floors
from provision.report import (
    ATTENTION,
    NOT_PASSED,
    attention,
    cases,
    change_text,
    counts,
    duration_text,
    host_state,
    ordered,
    reboot_pending,
    verification_text,
    versions_text,
    wheel_notes,
)

FOLD_PASSING = 12  # more all-pass hosts than this go into a <details> below the failing ones
CELL = {"pass": "", "fail": "F", "crash": "C", "timeout": "T", "error": "E", "skipped": "–"}

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2rem 1.5rem;color:#1b1f24;
background:#f6f8fa;font-size:14px}
h1{font-size:1.35rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}h3{font-size:1rem;margin:0}
a{color:inherit}.muted{color:#57606a}.meta{color:#57606a;margin:0 0 .5rem}
.chips{margin:.2rem 0 .6rem;display:flex;flex-wrap:wrap;gap:.35rem}
.badge{display:inline-block;border-radius:1rem;padding:.05rem .55rem;font-weight:600;font-size:.8rem;
white-space:nowrap;background:#eaeef2;color:#424a53;border:1px solid transparent}
.s-failed,.s-unreachable{background:#ffebe9;color:#a40e26;border-color:#ff8182}
.s-blocked{background:#fff8c5;color:#7d4e00;border-color:#d4a72c}
.s-done{background:#dafbe1;color:#116329;border-color:#4ac26b}
.s-fallback-applied{background:#ddf4ff;color:#0550ae;border-color:#54aeff}
.reboot{background:#8250df;color:#fff;border-color:#6639ba}
.notice{background:#fbefff;border:2px solid #8250df;border-radius:6px;padding:.5rem .8rem;margin:.4rem 0 .8rem}
.notice b{color:#6639ba}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}
table.summary{width:100%}
table.summary thead th{position:sticky;top:0;z-index:1}
table.summary td{white-space:nowrap;padding:.25rem .45rem}table.summary td.ba{white-space:normal}
.nw{white-space:nowrap}
table.summary tr.why td{border-top:0;padding-top:0;font-size:12px;color:#57606a}
table.summary tr.why div{width:0;min-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.summary tr:has(+tr.why) td{border-bottom:0}
table.summary td.num{text-align:right}
tr.a0 td,tr.a1 td{background:#fff5f5}tr.a2 td{background:#fffdf0}tr.a3 td{background:#fbf7ff}
tr.a0 td:first-child,tr.a1 td:first-child{box-shadow:inset 4px 0 #cf222e}
tr.a2 td:first-child{box-shadow:inset 4px 0 #bf8700}tr.a3 td:first-child{box-shadow:inset 4px 0 #8250df}
.v-pass{color:#1a7f37}.v-bad{color:#cf222e;font-weight:600}
table.matrix{table-layout:fixed;font-size:11px}
table.matrix th,table.matrix td{padding:0;width:1.45rem;height:1.3rem;text-align:center;vertical-align:middle}
table.matrix th.host,table.matrix td.host{width:16rem;max-width:16rem;text-align:left;padding:0 .4rem;
overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:12px}
table.matrix td a{display:block;text-decoration:none}
td.c-pass{background:#4ac26b}td.c-fail,td.c-crash,td.c-timeout,td.c-error{background:#cf222e;color:#fff;
font-weight:700}td.c-skipped{background:#d0d7de;color:#57606a}td.c-none{background:#fff}
ol.legend{columns:2 34rem;font-size:12px;margin:.5rem 0;padding-left:2.2rem}
ol.legend li{break-inside:avoid}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(26rem,1fr));gap:.8rem;align-items:start}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.7rem .9rem;border-top:6px solid #8c959f;
min-width:0}
.card.done{border-top-color:#1a7f37}.card.fallback-applied{border-top-color:#0969da}
.card.failed,.card.unreachable{border-top-color:#cf222e}.card.blocked{border-top-color:#bf8700}
.card.rb{outline:2px solid #8250df}
.card p{margin:.35rem 0}.card ul{padding-left:1.1rem;margin:.3rem 0}
.card table{width:100%;font-size:12px}.card td{overflow-wrap:anywhere}
.card td.num{text-align:right;white-space:nowrap;overflow-wrap:normal}
ul.failing li{overflow-wrap:anywhere;margin:.2rem 0}code{font-size:12px}
.card h3{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}
details summary{cursor:pointer;color:#0969da}
svg text{font-size:11px;font-family:inherit}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(host: dict[str, Any]) -> str:
    state = host_state(host)
    out = f"<span class='badge s-{_e(state)}'>{_e(host.get('state'))}</span>"
    if host.get("reboot_pending"):
        out += " <span class='badge reboot'>⟳ reboot pending</span>"
    return out


def _gpus(host: dict[str, Any]) -> tuple[str, str]:
    """(short text, full text) of the host's compute GPUs."""
    compute = [g for g in host.get("gpus") or [] if g.get("role") == "compute"]
    short = "; ".join(f"{g.get('pci_id') or '?'} {g.get('gfx') or g.get('gfx_runtime') or '?'}"
                      for g in compute) or "-"
    full = "; ".join(f"{g.get('pci_id') or '?'} {g.get('name') or ''} ({g.get('gfx') or g.get('gfx_runtime')}, "
                     f"{g.get('role')})" for g in host.get("gpus") or [])
    return short, full


def _change(host: dict[str, Any]) -> str:
    """Before -> after, each part kept whole when the cell wraps (`ROCm 5.2.0 → 7.0.0,` / `torch 2.8.0+rocm7.0.0`)."""
    return ", ".join(f"<span class='nw'>{_e(part)}</span>" for part in change_text(host).split(", "))


def _verification_cell(host: dict[str, Any]) -> str:
    verification = host.get("verification") or {}
    if not verification:
        return "<span class='muted'>-</span>"
    n = counts(host)
    bad = sum(n.get(s, 0) for s in NOT_PASSED)
    where = (verification.get("device") or {}).get("type")
    on = f" <span class='muted'>on {_e(where)}</span>" if where and where != "cuda" else ""
    text = f"{_e(verification.get('verdict'))} {_e(n.get('pass', 0))}/{_e(n.get('total', 0))}"
    detail = ", ".join(f"{n[s]} {s}" for s in NOT_PASSED if n.get(s))
    if bad or verification.get("verdict") != "pass":
        return f"<span class='v-bad'>{text}</span>{' · ' + _e(detail) if detail else ''}{on}"
    converged = (f" <span class='muted' title='{_e(verification_text(host))}'>↺ {_e(verification['verified_at'])}"
                 "</span>" if verification.get("verified_at") else "")
    skipped = f" <span class='muted'>· {_e(n['skipped'])} skipped</span>" if n.get("skipped") else ""
    return f"<span class='v-pass'>{text}</span>{skipped}{on}{converged}"


def _why(host: dict[str, Any]) -> str:
    """A second line under a host that needs a look (failed, unreachable, blocked, skipped): its reason, one line
    (the whole text in the title and in the host's card)."""
    reason = str(host.get("reason") or "")
    if not reason or host_state(host) not in ("failed", "unreachable", "blocked", "skipped"):
        return ""
    short = reason if len(reason) <= 300 else reason[:299] + "…"
    return (f"<tr class='a{attention(host)} why'><td></td><td colspan='7'><div title='{_e(reason)}'>{_e(short)}"
            "</div></td></tr>")


def _summary(hosts: list[dict[str, Any]], ids: dict[str, int]) -> str:
    rows = []
    for h in hosts:
        gpu_short, gpu_full = _gpus(h)
        before_after = f"before: {versions_text(h.get('before'))}; after: {versions_text(h.get('after'))}"
        rows.append(
            f"<tr class='a{attention(h)}'><td><a href='#h{ids[h['name']]}'>{_e(h['name'])}</a></td>"
            f"<td>{_badge(h)}</td><td>{_e((h.get('plan') or {}).get('action', '-'))}</td>"
            f"<td title='{_e(gpu_full)}'>{_e(gpu_short)}</td>"
            f"<td class='ba' title='{_e(before_after)}'>{_change(h)}</td>"
            f"<td>{_verification_cell(h)}</td><td class='num'>{_e(h.get('changed', 0))}</td>"
            f"<td class='num' title='first task to last: {_e(duration_text(h.get('span_s', h.get('duration_s'))))}'>"
            f"{_e(duration_text(h.get('duration_s')))}</td></tr>{_why(h)}")
    return ("<table class='summary' id='summary'><thead><tr><th>host</th><th>state</th><th>plan</th><th>GPU</th>"
            "<th>before → after</th><th>verification</th><th title='Ansible tasks that changed something'>changes"
            "</th><th title=\"the host's own time: its tasks' run time, waits for other hosts left out\">time</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _matrix(hosts: list[dict[str, Any]], ids: dict[str, int]) -> str:
    """Host × case: failing hosts first (most failures first), failing cases leftmost."""
    tested = [h for h in hosts if cases(h)]
    untested = len(hosts) - len(tested)
    note = (f"<p class='muted'>{untested} host(s) have no per-case results here (blocked, failed before "
            "verification, a check run, or converged with the summary of their last run).</p>" if untested else "")
    if not tested:
        return "<p class='muted'>No verification results.</p>" + note
    failures: dict[str, int] = {}
    order: dict[str, int] = {}
    for h in tested:
        for c in cases(h):
            order.setdefault(str(c["name"]), len(order))
            failures[str(c["name"])] = failures.get(str(c["name"]), 0) + int(c.get("status") in NOT_PASSED)
    columns = sorted(order, key=lambda n: (-failures[n], order[n]))

    def bad(h: dict[str, Any]) -> int:
        return sum(1 for c in cases(h) if c.get("status") in NOT_PASSED)

    tested.sort(key=lambda h: (-bad(h), attention(h), str(h["name"])))
    failing = [h for h in tested if bad(h)]
    passing = [h for h in tested if not bad(h)]
    head = ("<thead><tr><th class='host'>host</th>"
            + "".join(f"<th title='{_e(n)}'>{i}</th>" for i, n in enumerate(columns, 1)) + "</tr></thead>")

    def row(h: dict[str, Any]) -> str:
        by_name = {str(c["name"]): c for c in cases(h)}
        anchor = f"#h{ids[h['name']]}"
        cells = []
        for i, n in enumerate(columns, 1):
            c = by_name.get(n)
            if c is None:
                cells.append("<td class='c-none' title='not run'></td>")
                continue
            status = str(c.get("status"))
            tip = f"{h['name']} · {i}. {n}: {status}"
            if c.get("error"):
                tip += f" — {str(c['error'])[:300]}"
            mark = CELL.get(status, "?")
            inner = f"<a href='{anchor}'>{mark}</a>" if status in NOT_PASSED else mark
            cells.append(f"<td class='c-{_e(status)}' title='{_e(tip)}'>{inner}</td>")
        return (f"<tr><td class='host' title='{_e(h['name'])}'><a href='{anchor}'>{_e(h['name'])}</a></td>"
                + "".join(cells) + "</tr>")

    shown, folded = (failing + passing, []) if len(passing) <= FOLD_PASSING else (failing, passing)
    parts = [f"<p>{len(failing)} of {len(tested)} host(s) failed a case; {sum(1 for n in columns if failures[n])} of "
             f"{len(columns)} case(s) failed somewhere. Columns are numbered (failing cases first); hover a cell "
             "for the case and its error, click a red cell for the host's details. "
             "<span class='muted'>Legend: green pass, F fail, C crash, T timeout, E error, – skipped.</span></p>"]
    if shown:
        parts.append(f"<table class='matrix'>{head}<tbody>{''.join(row(h) for h in shown)}</tbody></table>")
    if folded:
        parts.append(f"<details><summary>{len(folded)} host(s) passed every case: show them</summary>"
                     f"<table class='matrix'>{head}<tbody>{''.join(row(h) for h in folded)}</tbody></table>"
                     "</details>")
    legend = "".join(f"<li title='{_e(n)}'>{_e(n)}" + (f" <b class='v-bad'>— failed on {failures[n]} host(s)</b>"
                                                        if failures[n] else "") + "</li>" for n in columns)
    parts.append(f"<details{' open' if len(columns) <= 40 else ''}><summary>Cases by column</summary>"
                 f"<ol class='legend'>{legend}</ol></details>")
    return "".join(parts) + note


def _case_rows(listed: list[dict[str, Any]]) -> str:
    """Every case of a host: status, time, TFLOP/s and share of the GPU's peak (errors are in the failing list)."""
    rows = []
    for c in listed:
        frac = c.get("peak_fraction")
        share = f"{frac:.1%}" if isinstance(frac, float) else ""
        status = str(c.get("status"))
        tflops = c.get("tflops")
        rows.append(f"<tr><td>{_e(c.get('name'))}</td><td class='{'v-bad' if status in NOT_PASSED else ''}'>"
                    f"{_e(status)}</td><td class='num'>{_e(round((c.get('time_s') or 0) * 1000, 3))}</td>"
                    f"<td class='num'>{_e(round(tflops, 2) if isinstance(tflops, int | float) else '')}</td>"
                    f"<td class='num'>{_e(share)}</td></tr>")
    return ("<table class='cases'><thead><tr><th>case</th><th>status</th><th>ms</th><th>TFLOP/s</th><th>of peak</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _failing(listed: list[dict[str, Any]]) -> str:
    """The cases a host failed, each with its whole error (as much as the report keeps: 2,000 characters)."""
    items = "".join(f"<li><b class='v-bad'>{_e(c.get('status'))}</b> <code>{_e(c.get('name'))}</code>: "
                    f"{_e(str(c.get('error') or '')[:2000])}</li>" for c in listed)
    return f"<p><b class='v-bad'>failing cases</b></p><ul class='failing'>{items}</ul>"


def _phases(h: dict[str, Any]) -> str:
    """`stage 1 m 51 s, remove 26 s, stack 44 s (failed)`: the host's own seconds per phase, a phase entered more
    than once (stack around the reboot) summed, in the order first entered."""
    spent: dict[str, float] = {}
    failed: dict[str, str] = {}
    for p in h.get("phases") or []:
        name = str(p.get("name"))
        spent[name] = spent.get(name, 0.0) + float(p.get("busy_s", p.get("duration_s")) or 0)
        if p.get("status") not in ("ok", None):
            failed[name] = str(p.get("status"))
    return ", ".join(f"{_e(name)} {_e(duration_text(seconds))}" + (f" ({_e(failed[name])})" if name in failed else "")
                     for name, seconds in spent.items())


def _workaround(h: dict[str, Any]) -> str:
    """The host's MIOpen workaround search: outcome, trials, and which switch fixed which case."""
    search = h.get("workaround") or {}
    if not search:
        return ""
    fixes = "".join(f"<li><code>{_e(case)}</code>: " + ", ".join(f"<code>{_e(s)}=0</code>" for s in switches)
                    + "</li>" for case, switches in (search.get("fixes") or {}).items())
    return (f"<p>workaround search: <b>{_e(search.get('status'))}</b>, {_e(search.get('trials'))} trial(s), "
            f"{_e(search.get('seconds'))} s, MIOpen {_e(search.get('miopen_release') or '?')}</p>"
            + (f"<ul>{fixes}</ul>" if fixes else ""))


def _card(h: dict[str, Any], ident: int) -> str:
    plan = h.get("plan") or {}
    items = "".join(f"<li>{_e(r)}</li>" for r in plan.get("reasons", []))
    items += "".join(f"<li class='muted'>⚠ {_e(w)}</li>" for w in plan.get("warnings", []))
    items += "".join(f"<li class='muted'>{_e(n)}</li>" for n in wheel_notes(h))
    _, gpus = _gpus(h)
    reason = h.get("reason")
    show_reason = reason and reason != "; ".join(plan.get("reasons", []))
    listed = cases(h)
    bad = [c for c in listed if c.get("status") in NOT_PASSED]
    phases = _phases(h)
    reboot = ("<p><b>⟳ Reboot pending:</b> the new amdgpu driver is installed and loads at the next reboot, which "
              "this run was not allowed to do. Reboot the host, then run <code>provision verify</code>.</p>"
              if h.get("reboot_pending") else "")
    return (
        f"<div class='card {_e(host_state(h))}{' rb' if h.get('reboot_pending') else ''}' id='h{ident}'>"
        f"<h3>{_e(h['name'])} {_badge(h)}</h3>"
        + (f"<p>{_e(reason)}</p>" if show_reason else "")
        + reboot
        + f"<p>plan: <b>{_e(plan.get('action', '-'))}</b></p>" + (f"<ul>{items}</ul>" if items else "")
        + f"<p class='muted'>{_e(gpus) or 'no GPU found'}</p>"
        f"<p>before: {_e(versions_text(h.get('before')))}<br>after: {_e(versions_text(h.get('after')))}</p>"
        + _workaround(h)
        + (f"<p>verification: {_verification_cell(h)}</p>" if h.get("verification") else "")
        + (_failing(bad) if bad else "")
        + (f"<details><summary>all {len(listed)} case(s)</summary>{_case_rows(listed)}</details>" if listed else "")
        + f"<p class='muted'>{_e(h.get('changed', 0))} changed · own time {_e(duration_text(h.get('duration_s')))}"
        f" (first task to last {_e(duration_text(h.get('span_s', h.get('duration_s'))))})"
        + (f"<br>own time per phase: {phases}" if phases else "") + "</p></div>"
    )


def _chart(rows: list[tuple[str, str, float]]) -> str:
    """Horizontal bars of achieved TFLOP/s, the 40 highest (host, case) pairs; plain inline SVG, no scripts."""
    if not rows:
        return "<p class='muted'>No TFLOP/s were measured (no GPU ran the cases).</p>"
    rows = sorted(rows, key=lambda r: -r[2])[:40]
    top = max(r[2] for r in rows) or 1.0
    bar_h, label_w, width = 16, 420, 900
    parts = [f"<svg role='img' aria-label='TFLOP/s per case' width='{width}' height='{bar_h * len(rows) + 10}' "
             "xmlns='http://www.w3.org/2000/svg'>"]
    for i, (host, case, value) in enumerate(rows):
        y = 5 + i * bar_h
        w = max(1.0, (width - label_w - 70) * value / top)
        label = f"{host if len(host) <= 20 else host[:19] + '…'}: {case if len(case) <= 42 else case[:41] + '…'}"
        parts.append(f"<text x='0' y='{y + 12}'><title>{_e(host)}: {_e(case)}</title>{_e(label)}</text>"
                     f"<rect x='{label_w}' y='{y + 2}' width='{w:.1f}' height='{bar_h - 4}' fill='#0969da'/>"
                     f"<text x='{label_w + w + 4:.1f}' y='{y + 12}'>{value:.2f}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _floor_table(hosts: list[dict[str, Any]]) -> str:
    """Worst detection floor per dtype and pass over the fleet (the largest uniform relative error of a result
    that a checked pass could miss), with the host it was seen on: one short table for 4 hosts or 400."""
    worst: dict[str, dict[str, tuple[float, str]]] = {}
    for h in hosts:
        for dt, row in ((h.get("verification") or {}).get("detection_floors") or {}).items():
            for p, cell in row.items():
                value = cell.get("worst")
                if value is not None and (p not in worst.get(dt, {}) or value > worst[dt][p][0]):
                    worst.setdefault(dt, {})[p] = (value, str(h["name"]))
    if not worst:
        return ""
    head = "".join(f"<th>{_e(p)}</th>" for p in floors.PASSES)
    rows = []
    for dt, row in worst.items():
        cells = "".join(
            f"<td title='{_e(row[p][1])}'>{_e(floors.fmt(row[p][0]))}</td>" if p in row else "<td>-</td>"
            for p in floors.PASSES)
        rows.append(f"<tr><td>{_e(dt)}</td><td>≤ {_e(floors.fmt(floors.FLOOR_GOAL.get(dt)))}</td>{cells}</tr>")
    return ("<p>Detection floor: the largest uniform relative error of a result that a checked pass could miss "
            "(worst per dtype and pass over all hosts; hover a cell for the host).</p><table class='floors'><thead>"
            f"<tr><th>dtype</th><th>goal</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def page(report: dict[str, Any]) -> str:
    run = report["run"]
    hosts = ordered(report["hosts"])
    ids = {h["name"]: i for i, h in enumerate(hosts)}
    chips = "".join(f"<span class='badge s-{_e(s)}'>{_e(n)} {_e(s)}</span>" for s, n in sorted(
        report["summary"]["by_state"].items(), key=lambda kv: ATTENTION.get(kv[0], 99)))
    pending = reboot_pending(hosts)
    if pending:
        chips += f"<span class='badge reboot'>⟳ {len(pending)} reboot pending</span>"
        listed = ", ".join(pending[:12]) + (f" and {len(pending) - 12} more" if len(pending) > 12 else "")
        notice = (f"<p class='notice'><b>⟳ Reboot pending on {len(pending)} host(s)</b>: the new amdgpu driver "
                  f"loads only after a reboot this run was not allowed to do ({_e(listed)}). Reboot them, then run "
                  "<code>provision verify</code>.</p>")
    else:
        notice = ""
    chart_rows = [(str(h["name"]), str(c["name"]), float(c["tflops"]))
                  for h in hosts for c in cases(h) if c.get("tflops")]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>provision {_e(run['command'])} — {_e(run['id'])}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>provision {_e(run['command'])}: {_e(report['summary']['hosts'])} host(s)</h1>"
        f"<p class='meta'>run {_e(run['id'])} · inventory {_e(run['inventory'])} · {_e(run['started'])} → "
        f"{_e(run['finished'])} ({_e(duration_text(run['duration_s']))} in all) · pins "
        f"{_e(report['tool']['pins_version'])} · rocm-provision {_e(report['tool']['version'])}"
        f"{' · <b>check mode: nothing changed</b>' if run.get('check_mode') else ''}</p>"
        f"<div class='chips'>{chips}</div>{notice}"
        f"{_summary(hosts, ids)}"
        f"<h2 id='verification'>Verification: host × case</h2>{_matrix(hosts, ids)}{_floor_table(hosts)}"
        f"<h2 id='hosts'>Hosts</h2><div class='cards'>{''.join(_card(h, ids[h['name']]) for h in hosts)}</div>"
        f"<h2 id='tflops'>Achieved TFLOP/s</h2>{_chart(chart_rows)}"
        "</body></html>\n"
    )
