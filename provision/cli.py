"""The `provision` command line."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision import __version__, outcome, pins, report
from provision.ansible_options import AnsibleOptions
from provision.errors import InputError, InventoryError, ProvisionError
from provision.redact import text as redact_text

app = typer.Typer(
    name="provision",
    help=(
        "Bring a lab of AMD GPU hosts from ROCm 5.2 to a verified ROCm 7.0 + PyTorch 2.8.0 state, or give "
        "the hosts that cannot upgrade a verified MIOpen fallback profile.\n\n"
        "Start with `provision hosts validate --hosts lab.ini` (checks your inventory, contacts nothing) and "
        "`provision gpus identify --lspci FILE` (classifies a GPU from pasted output)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
gpus_app = typer.Typer(help="Identify AMD GPUs and browse the GPU catalog.", no_args_is_help=True)
hosts_app = typer.Typer(help="Validate an inventory and show each host's spec and plan.", no_args_is_help=True)
env_app = typer.Typer(help="Browse the catalog of MIOpen / HIP / HSA environment variables.", no_args_is_help=True)
app.add_typer(gpus_app, name="gpus")
app.add_typer(hosts_app, name="hosts")
app.add_typer(env_app, name="env")

try:  # the container lab is optional at import time so the core CLI never breaks on it
    from provision.lab.cli import app as lab_app

    app.add_typer(lab_app, name="lab",
                  help="A container lab that rehearses the upgrade (podman, SSH, a signed mirror).")
except ImportError:  # pragma: no cover - only while the lab package is absent
    pass

# Piped or redirected, tables are not wrapped or cut to a terminal's width: every row stays one line that
# grep, awk and cut can read (`provision env list | grep MIOPEN_DEBUG_CONV_GEMM`).
# Never emoji codes (":end:" in a host name stays as typed); user text goes through escape() or markup=False.
UNWRAPPED_WIDTH = 100_000
out = Console(highlight=False, soft_wrap=False, emoji=False,
              width=None if sys.stdout.isatty() else UNWRAPPED_WIDTH)
err = Console(stderr=True, highlight=False, emoji=False)


def _human_output_to_stderr() -> None:
    """With --json the report is stdout's only content; tables and summaries go to stderr."""
    global out
    out = err


# Options shared by the commands that read an inventory or run playbooks, spelled as ansible-playbook spells them.
HostsOption = Annotated[Path, typer.Option("--hosts", "-i", exists=True, readable=True,
                                           help="Inventory file or directory (INI or YAML).")]
LimitOption = Annotated[str | None, typer.Option("--limit", "-l",
                                                 help="Only these hosts or groups (Ansible --limit pattern); "
                                                      "the other hosts need not be valid.")]
ForksOption = Annotated[int | None, typer.Option(min=1, max=500, help="Hosts worked on at once.")]
ExtraVarsOption = Annotated[list[str] | None, typer.Option(
    "--extra-vars", "-e", help="Extra variables as ansible-playbook takes them: key=value, YAML/JSON or @FILE "
                               "(repeatable; they win over the inventory, and are validated with it).")]
VaultFileOption = Annotated[list[Path] | None, typer.Option(
    "--vault-password-file", exists=True, dir_okay=False, readable=True,
    help="File (or executable script) with the Ansible Vault password (repeatable; "
         "ANSIBLE_VAULT_PASSWORD_FILE works too).")]
AskVaultOption = Annotated[bool, typer.Option("--ask-vault-pass", help="Ask for the Ansible Vault password.")]
AskBecomeOption = Annotated[bool, typer.Option("--ask-become-pass", "-K",
                                               help="Ask for the privilege escalation (sudo) password.")]
VerboseOption = Annotated[int, typer.Option("--verbose", "-v", count=True,
                                            help="Ansible verbosity (-v … -vvvvvv); its output is in the run "
                                                 "directory's artifacts/*/stdout.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print report.json on stdout (the rest goes to stderr).")]


def _ansible_options(extra_vars: list[str] | None, vault_password_file: list[Path] | None, ask_vault_pass: bool,
                     ask_become_pass: bool, verbose: int) -> AnsibleOptions:
    options = AnsibleOptions(extra_vars=list(extra_vars or []), vault_password_files=list(vault_password_file or []),
                             ask_vault_pass=ask_vault_pass, ask_become_pass=ask_become_pass, verbosity=verbose)
    options.prompt()
    return options


def _load(hosts: Path, limit: str | None, options: AnsibleOptions | None) -> Any:
    """The validated inventory; hosts outside --limit that are not valid are warned about and left out."""
    from provision.inventory import load_lab

    lab = load_lab(hosts, limit=limit, options=options)
    for warning in lab.skipped:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    return lab


_SERIAL_RE = re.compile(r"^([1-9][0-9]*|([1-9][0-9]?|100)%)\Z")


def _serial(value: str | None) -> str | None:
    if value is not None and not _SERIAL_RE.match(value.strip()):
        raise typer.BadParameter(f"{value!r} is neither a number of hosts (2) nor a percentage (25%)")
    return value.strip() if value is not None else None

ACTION_STYLE = {"upgrade": "green", "upgrade-with-override": "yellow", "fallback": "cyan", "blocked": "red",
                "undecided": "dim"}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"provision {__version__} (pins {pins.version()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and the pin set, then exit.")] = False,
) -> None:
    """Global options."""


def _read_input(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    from provision import safeinput

    if path == "-":
        return safeinput.read_stdin(what)
    return safeinput.read_text(path, what)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


# ------------------------------------------------------------------ gpus


@gpus_app.command("identify")
def gpus_identify(
    lspci: Annotated[str | None, typer.Option(help="`lspci -nn` output (a file, or - for stdin).")] = None,
    rocminfo: Annotated[str | None, typer.Option(help="`rocminfo` output (a file, or -).")] = None,
    agents: Annotated[str | None, typer.Option(help="`rocm_agent_enumerator` output (a file, or -).")] = None,
    sysfs_root: Annotated[
        Path | None, typer.Option(help="Read PCI and KFD entries under this root (/sys on a host).")
    ] = None,
    env: Annotated[
        str | None, typer.Option(help="Environment as `env` prints it, or /etc/environment (a file, or -).")
    ] = None,
    os_release: Annotated[str | None, typer.Option(help="The host's /etc/os-release (a file, or -).")] = None,
    mode: Annotated[str, typer.Option(help="Plan as if provision_mode were this: auto, upgrade or fallback.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Classify the GPUs of a box you cannot reach, from pasted command output, and show its plan.

    The PCI id decides the hardware; a gfx name from rocminfo is checked against it, so an
    HSA_OVERRIDE_GFX_VERSION in force is noticed. iGPUs and non-AMD GPUs are set aside.

    Examples:

        ssh ws7 lspci -nn | provision gpus identify --lspci -

        provision gpus identify --lspci lspci.txt --rocminfo rocminfo.txt --os-release os-release --json
    """
    from provision.identify import identify, parse_env
    from provision.osfacts import os_facts_from_text
    from provision.planner import RocmState, plan_host
    from provision.specs import HostSpec

    sources = [lspci, rocminfo, agents, env, os_release]
    if sum(1 for s in sources if s == "-") > 1:
        raise InputError("only one of the inputs can be read from stdin (-)")
    if not any([lspci, rocminfo, agents, sysfs_root]):
        raise InputError("give at least one of --lspci, --rocminfo, --agents or --sysfs-root "
                         "(see `provision gpus identify --help`)")
    if sysfs_root is not None and not sysfs_root.is_dir():
        raise InputError(f"--sysfs-root {sysfs_root} is not a directory")
    if mode not in ("auto", "upgrade", "fallback"):
        raise InputError(f"--mode {mode!r} is not one of auto, upgrade, fallback")
    env_text = _read_input(env, "env")
    env_map = parse_env(env_text) if env_text else {}
    ident = identify(lspci=_read_input(lspci, "lspci"), rocminfo=_read_input(rocminfo, "rocminfo"),
                     agents=_read_input(agents, "rocm_agent_enumerator"), sysfs_root=sysfs_root, env=env_map)
    os_text = _read_input(os_release, "os-release")
    facts = os_facts_from_text(os_text) if os_text else None
    overrides = {k: v for k, v in env_map.items() if k.startswith("HSA_")}
    plan = plan_host(HostSpec(mode=mode), ident, facts, RocmState(env_overrides=overrides))
    if as_json:
        _emit_json({"schema_version": 1, **ident.to_dict(),
                    "os": facts.__dict__ | {"key": facts.key} if facts else None, "plan": plan.to_dict()})
        return
    if not ident.gpus:
        out.print("[yellow]No display-class device found in the input.[/yellow]")
    table = Table(title="GPUs", show_lines=False)
    for col in ("PCI id", "name", "gfx", "family", "ROCm 7.0", "role"):
        table.add_column(col, overflow="fold")
    for g in ident.gpus:
        gfx = g.gfx or "?"
        if g.gfx_runtime and g.gfx_runtime != g.gfx:
            gfx = f"{gfx} (runtime: {g.gfx_runtime})"
        status = _status_text(g.rocm70, g.supported_os)
        table.add_row(g.pci_id or "-", escape(g.name), escape(gfx), g.family or "-", status, g.role)
    out.print(table)
    for g in ident.gpus:
        for text in g.diagnosis:
            out.print(f"{g.pci_id or g.gfx_runtime or g.name}: {text}", markup=False)
    for note in ident.notes:
        out.print(f"note: {note}", markup=False)
    if facts:
        out.print(f"OS: {facts.pretty_name or facts.key} ({facts.key})", markup=False)
    _print_plan(plan)


def _status_text(status: str | None, os_list: list[str]) -> str:
    if status is None:
        return "-"
    if status == "supported" and os_list:
        return f"supported on {', '.join(os_list)}"
    return status


def _print_plan(plan: Any, indent: str = "") -> None:
    style = ACTION_STYLE.get(plan.action, "")
    out.print(f"{indent}plan: [bold {style}]{plan.action}[/]")
    for r in plan.reasons:
        out.print(f"{indent}  - {escape(redact_text(r))}")
    for w in plan.warnings:
        out.print(f"{indent}  [yellow]! {escape(redact_text(w))}[/yellow]")
    if plan.env:
        out.print(f"{indent}  env to set: " + " ".join(f"{k}={v}" for k, v in plan.env.items()), markup=False)
    if plan.env_remove:
        out.print(f"{indent}  env to remove: " + " ".join(plan.env_remove), markup=False)


@gpus_app.command("list")
def gpus_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every GPU in the catalog with its chip, gfx target, family and ROCm 7.0 status.

    Example: `provision gpus list | grep gfx1030`
    """
    from provision.catalog import catalog

    devices = sorted(catalog().devices(), key=lambda d: (d.chip.gfx, d.pci_id))
    if as_json:
        _emit_json([{"pci_id": d.pci_id, "name": d.name, "chip": d.chip.name, "gfx": d.chip.gfx,
                     "family": d.chip.family, "segment": d.segment, "rocm70": d.rocm70,
                     "supported_os": list(d.supported_os), "integrated": d.chip.integrated} for d in devices])
        return
    table = Table(title=f"GPU catalog ({len(devices)} devices)")
    for col in ("PCI id", "name", "chip", "gfx", "family", "ROCm 7.0"):
        table.add_column(col, overflow="fold")
    for d in devices:
        table.add_row(d.pci_id, escape(d.name), d.chip.name, d.chip.gfx, d.chip.family,
                      _status_text(d.rocm70, list(d.supported_os)))
    out.print(table)


# ------------------------------------------------------------------ env


@env_app.command("list")
def env_list(
    workarounds: Annotated[
        bool, typer.Option("--workarounds", help="Only variables usable in a fallback profile.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the environment variables MIOpen, HIP, HSA and PyTorch really read, with their sources.

    Names in `provision_fallback_env` must come from this list. Example: `provision env list --workarounds`
    """
    from provision.envcatalog import env_catalog

    cat = env_catalog()
    rows = [v for v in cat.variables.values() if v.workaround or not workarounds]
    if as_json:
        _emit_json({"variables": [v.__dict__ for v in rows],
                    "not_read_by_anything": [n.__dict__ for n in cat.not_real.values()]})
        return
    table = Table(title=f"Environment variables ({len(rows)})")
    for col in ("name", "component", "type", "workaround", "description"):
        table.add_column(col, overflow="fold")
    for v in rows:
        table.add_row(v.name, v.component, v.type, "yes" if v.workaround else "", v.description)
    out.print(table)
    for n in cat.not_real.values():
        out.print(f"[red]not real:[/red] {n.name}: {escape(n.reason)}" + (f" (use {n.instead})" if n.instead else ""))


# ------------------------------------------------------------------ hosts


@hosts_app.command("validate")
def hosts_validate(
    hosts: HostsOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: LimitOption = None,
    extra_vars: ExtraVarsOption = None,
    vault_password_file: VaultFileOption = None,
    ask_vault_pass: AskVaultOption = False,
) -> None:
    """Validate an inventory and show every host's spec and what is known of its plan. Connects to nothing.

    Exit code 0: valid. Exit code 2: the problems are listed, each with file, host, variable, the
    bad value and what is allowed.

    Vaulted values are decrypted (--vault-password-file, --ask-vault-pass or ANSIBLE_VAULT_PASSWORD_FILE)
    and validated, never shown.

    Example: `provision hosts validate --hosts lab.ini`
    """
    from provision.identify import Identification, gpu_from_pci
    from provision.planner import plan_host

    lab = _load(hosts, limit, _ansible_options(extra_vars, vault_password_file, ask_vault_pass, False, 0))
    rows = []
    for entry in lab.hosts:
        ident = None
        if entry.spec.expected_gpus:
            from provision.catalog import catalog

            ident = Identification(gpus=[gpu_from_pci(p, None, "", catalog()) for p in entry.spec.expected_gpus])
        plan = plan_host(entry.spec, ident)
        if ident is not None and plan.action != "blocked":
            plan.reasons.insert(0, "from provision_expected_gpus; preflight confirms the GPUs and the OS")
        rows.append((entry, plan))
    if as_json:
        _emit_json({"schema_version": 1, "inventory": lab.source,
                    "hosts": [e.to_dict() | {"plan": p.to_dict()} for e, p in rows]})
        return
    table = Table(title=f"{escape(lab.source)}: {len(rows)} host(s), valid")
    for col in ("host", "address", "mode", "venv", "reboot", "plan"):
        table.add_column(col, overflow="fold")
    for entry, plan in rows:
        addr = "local" if entry.connection.endswith("local") else f"{entry.user + '@' if entry.user else ''}" \
            f"{entry.address}{':' + str(entry.port) if entry.port else ''}"
        shown = {f: "templated" for f in ("provision_mode", "provision_venv") if f in entry.templated}
        table.add_row(escape(entry.name), escape(addr), shown.get("provision_mode", entry.spec.mode),
                      shown.get("provision_venv", escape(entry.spec.venv)),
                      "yes" if entry.spec.allow_reboot else "no",
                      f"[{ACTION_STYLE.get(plan.action, '')}]{plan.action}[/]")
    out.print(table)
    for entry, plan in rows:
        notes = [*plan.reasons, *plan.warnings, *entry.warnings,
                 *(f"{v} is templated; checked at run time" for v in entry.templated)]
        if notes or plan.env:
            out.print(f"[bold]{escape(entry.name)}[/bold]")
            _print_plan(plan, indent="  ")
            for w in entry.warnings:
                out.print(f"    [yellow]! {escape(w)}[/yellow]")
            for variable in entry.templated:
                out.print(f"    {variable} is templated (or vaulted): left to ansible-playbook, checked at run "
                          "time", markup=False)


@app.command("check")
def check(
    hosts: HostsOption,
    limit: LimitOption = None,
    forks: ForksOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-host preflight results as JSON.")] = False,
    extra_vars: ExtraVarsOption = None,
    vault_password_file: VaultFileOption = None,
    ask_vault_pass: AskVaultOption = False,
    ask_become_pass: AskBecomeOption = False,
    verbose: VerboseOption = 0,
) -> None:
    """Read-only preflight of every host over SSH: GPUs by PCI id, OS, current ROCm, env overrides, and the plan.

    Changes nothing on any host. The inventory is validated first (exit 2 on problems). Exit 0 when
    every host was reached and planned, 1 when a host was unreachable or failed.

    Example: `provision check --hosts lab.ini`
    """
    options = _ansible_options(extra_vars, vault_password_file, ask_vault_pass, ask_become_pass, verbose)
    lab = _load(hosts, limit, options)
    started = datetime.now(UTC)
    results, run = _run_preflight(hosts, [h.name for h in lab.hosts], limit, forks, options)
    doc = outcome.build("check", run, hosts, started, datetime.now(UTC))
    report.write(doc, run.run_dir)
    if as_json:
        _emit_json({"schema_version": 1, "run_dir": str(run.run_dir), "hosts": {
            name: {"status": run.hosts[name].status, "message": run.hosts[name].message, "preflight": results.get(name)}
            for name in sorted(run.hosts)}})
    else:
        _print_preflight(results, run)
        out.print(f"report: {run.run_dir / 'report.html'} (also report.json, report.md, junit.xml)", markup=False)
    raise typer.Exit(report.exit_code(doc) or (1 if run.rc != 0 and not results else 0))


@app.command("demo")
def demo(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, max=16, help="Number of lab hosts.")] = 4,
    lab_dir: Annotated[Path | None, typer.Option(help="Lab state directory (default ~/.cache/rocm-provision/lab).")]
    = None,
) -> None:
    """Rehearse the whole upgrade on the container lab, then show the report.

    Brings up simulated GPU workstations: an RX 5600 XT under an HSA_OVERRIDE_GFX_VERSION with ROCm 5.2
    from amdgpu-install, a PRO W6800 on (simulated) Ubuntu 24.04, an RX 7900 XTX with an iGPU on Debian 12,
    and a fresh MI210; then runs `provision upgrade --yes` on them: real SSH, real apt against a signed
    mirror, real pip, the convolution suite on the CPU (containers have no GPU). Run it again to see a
    converged fleet; `provision lab down` removes it all.

    Example: `provision demo`
    """
    from provision.lab import cli as lab_cli
    from provision.progress import ProgressView
    from provision.runner import PlaybookRun

    lab_cli.up(hosts=hosts, first_address="127.0.0.2", mirror_port=None, lab_dir=lab_dir)
    status = lab_cli._lab(lab_dir, verbose=False).status()
    if status.inventory is None:
        raise ProvisionError("the lab came up without an inventory; run `provision lab status`")
    lab = __import__("provision.inventory", fromlist=["load_lab"]).load_lab(status.inventory)
    users_venv = Path(lab_cli.__file__).with_name("playbooks") / "users_venv.yml"
    prep = PlaybookRun(str(users_venv), status.inventory, hosts=[h.name for h in lab.hosts])
    with ProgressView(prep.hosts, "lab: stand-in users' venvs on fallback hosts", err) as view:
        prep.on_change = view.update
        done = prep.run()
    if done.rc != 0:
        raise ProvisionError(f"preparing the lab's users' venvs failed; see {done.run_dir}")
    out.print(f"\n[bold]provision upgrade --hosts {escape(str(status.inventory))} --yes[/bold]")
    upgrade(hosts=status.inventory, yes=True, check_mode=False, limit=None, forks=None, serial=None,
            max_fail_percent=None, retry_failed=False, reverify=False)


def _run_preflight(inventory: Path, names: list[str], limit: str | None, forks: int | None,
                   options: AnsibleOptions | None = None) -> tuple[dict, Any]:
    from provision.progress import ProgressView
    from provision.runner import PlaybookRun

    run = PlaybookRun("check.yml", inventory, hosts=names, limit=limit, forks=forks, options=options)
    with ProgressView(run.hosts, "preflight", err) as view:
        run.on_change = view.update
        result = run.run()
    return result.stats.get("provision_preflight", {}), result


def _print_preflight(results: dict[str, Any], run: Any) -> None:
    table = Table(title=f"preflight: {len(run.hosts)} host(s)  (run: {escape(str(run.run_dir))})")
    for col in ("host", "GPU", "OS", "ROCm now", "plan"):
        table.add_column(col, overflow="fold")
    for name in sorted(n for n, h in run.hosts.items() if h.status != "pending" or n in results):
        res = results.get(name)
        if res is None:
            host = run.hosts[name]
            table.add_row(escape(name), "-", "-", "-", f"[red]{host.status}[/red] {escape(redact_text(host.message))}")
            continue
        gpus = ", ".join(f"{g['pci_id'] or '?'} {g['gfx'] or g['gfx_runtime'] or ''}"
                         + (f" (runtime {g['gfx_runtime']})" if g["gfx_runtime"] and g["gfx_runtime"] != g["gfx"]
                            else "") + ("" if g["role"] == "compute" else f" [{g['role']}]")
                         for g in res["gpus"]) or "none"
        os_key = res["os"]["key"] if res.get("os") else "?"
        rocm = res["rocm"]["version"] or "none"
        if res["rocm"]["install_method"]:
            rocm += f" ({res['rocm']['install_method']})"
        action = res["plan"]["action"]
        table.add_row(escape(name), escape(gpus), escape(os_key), escape(rocm),
                      f"[{ACTION_STYLE.get(action, '')}]{action}[/]")
    out.print(table)
    for name in sorted(results):
        plan = results[name]["plan"]
        out.print(f"[bold]{escape(name)}[/bold]")
        _print_plan(_PlanView(plan), indent="  ")


class _PlanView:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.__dict__.update(plan)


def _confirm_or_exit(results: dict[str, Any], yes: bool) -> None:
    changing = sorted(n for n, r in results.items() if r["plan"]["action"] != "blocked")
    if not changing:
        out.print("Nothing to do: every reachable host is blocked (see the reasons above).")
        raise typer.Exit(0)
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError("not asking for confirmation without a terminal: re-run with --yes to upgrade, "
                         "or --check for a dry run")
    if not typer.confirm(f"Apply these plans to {len(changing)} host(s): {', '.join(changing)}?", default=False,
                         err=True):
        out.print("Nothing was changed.")
        raise typer.Exit(0)


def _failed_last_time(inventory: Path) -> str:
    """Hosts whose most recent upgrade (in any earlier run on this inventory) failed or was unreachable."""
    from provision.runner import runs_dir

    latest: dict[str, str] = {}
    seen_run = False
    for run_dir in sorted(runs_dir().glob("*-upgrade"), reverse=True):
        if not (run_dir / "report.json").is_file():
            continue
        doc = report.load(run_dir)
        if Path(doc["run"]["inventory"]).resolve() != inventory.resolve() or doc["run"].get("check_mode"):
            continue
        seen_run = True
        for host in doc["hosts"]:
            latest.setdefault(host["name"], report.host_state(host))
    if not seen_run:
        raise InputError(f"no earlier upgrade of {inventory} was found: nothing to retry")
    failed = sorted(name for name, state in latest.items() if state in ("failed", "unreachable"))
    if not failed:
        raise InputError(f"no host of {inventory} failed in its last upgrade: nothing to retry")
    return ",".join(failed)


@app.command("upgrade")
def upgrade(
    hosts: HostsOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing hosts.")] = False,
    check_mode: Annotated[bool, typer.Option("--check", help="Dry run: show what would change (with diffs).")]
    = False,
    limit: LimitOption = None,
    forks: ForksOption = None,
    serial: Annotated[str | None, typer.Option(callback=_serial,
                                               help="Hosts per batch, e.g. 2 or 25% (rolling upgrade).")] = None,
    max_fail_percent: Annotated[int | None, typer.Option(min=0, max=100,
                                                         help="Stop the run when more hosts of a batch fail.")]
    = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Only the hosts that failed or were unreachable last time.")]
    = False,
    reverify: Annotated[bool, typer.Option("--reverify",
                                           help="Take the full path (verification included) on converged hosts too.")]
    = False,
    update_lock: Annotated[bool, typer.Option(
        "--update-lock", help="Record the wheels' sha256 as they are now in rocm-provision.lock (beside the "
                              "inventory), replacing what differs; without it a differing file is refused.")] = False,
    as_json: JsonOption = False,
    extra_vars: ExtraVarsOption = None,
    vault_password_file: VaultFileOption = None,
    ask_vault_pass: AskVaultOption = False,
    ask_become_pass: AskBecomeOption = False,
    verbose: VerboseOption = 0,
) -> None:
    """Upgrade every host to its plan: ROCm 7.0 + PyTorch 2.8.0, or the MIOpen fallback profile; then verify.

    Validates the inventory (exit 2 on problems), runs the read-only preflight, shows each host's plan and
    asks before changing anything (with --yes nothing is asked and the plans are in the final report).
    Live progress per host; a report (HTML, Markdown, JSON, JUnit) is written to the run directory.
    Exit 0: every host done, fallback-applied or blocked as planned; 1: a host failed or was unreachable
    (`--retry-failed` re-runs just those); 2: usage or validation error.
    A host that a verified run left as this run would leave it (same settings, pins and roles; packages,
    profile and venv unchanged) is converged and skipped (`done`, last verified at ...); `--reverify` runs
    the full path, verification included, anyway.

    Examples:

        provision upgrade --hosts lab.ini

        provision upgrade --hosts lab.ini --check

        provision upgrade --hosts lab.ini --yes --reverify

        provision upgrade --hosts lab.ini --yes --serial 25% --max-fail-percent 10

        provision upgrade -i site.ini --limit gpu_lab --vault-password-file ~/.vault-pass -K --yes --json > run.json

        provision upgrade --hosts lab.ini --update-lock    # after you changed the pins or the index on purpose
    """
    from provision.progress import ProgressView
    from provision.runner import PlaybookRun

    if as_json:
        _human_output_to_stderr()
    if retry_failed and limit:
        raise InputError("--retry-failed chooses the hosts itself; drop --limit")
    options = _ansible_options(extra_vars, vault_password_file, ask_vault_pass, ask_become_pass, verbose)
    if retry_failed:
        limit = _failed_last_time(hosts)
        out.print(f"retrying: {limit}", markup=False)
    lab = _load(hosts, limit, options)
    if not yes or check_mode:
        # The plans are shown (and confirmed) before anything changes. With --yes nobody is asked: the
        # upgrade playbook's own preflight plans each host (same planner), which saves a whole pass over
        # the fleet (the controller-overhead goal of bench/bench_controller.py).
        results, pre = _run_preflight(hosts, [h.name for h in lab.hosts], limit, forks, options)
        _print_preflight(results, pre)
        if any(h.status in ("failed", "unreachable") for h in pre.hosts.values()):
            out.print("[yellow]Some hosts could not be preflighted; they are left out of this run.[/yellow]")
        if not check_mode:
            _confirm_or_exit(results, yes)
    extravars: dict[str, Any] = {}
    if serial:
        extravars["provision_serial"] = serial
    if max_fail_percent is not None:
        extravars["provision_max_fail_percent"] = max_fail_percent
    if reverify:
        extravars["rocm_preflight_force"] = True
    # the fleet's artifact lock file, beside the inventory (see README: "The artifact lock file")
    extravars["provision_artifact_lock"] = str(artifact_lock_path(hosts))
    if update_lock:
        extravars["provision_artifact_lock_update"] = True
    started = datetime.now(UTC)
    run = PlaybookRun("upgrade.yml", hosts, hosts=[h.name for h in lab.hosts], limit=limit, forks=forks,
                      extravars=extravars, check=check_mode, options=options)
    run.extravars["conv_verify_fetch_dir"] = str(run.run_dir / "verify")
    # the host lock's run id: random (never the host name, which clones and containers share), with the run
    # directory's name for people reading the lock
    lock_id = f"{run.run_dir.name}:{uuid.uuid4().hex}"
    run.extravars["rocm_preflight_lock_run_id"] = lock_id
    # the controller's artifact cache downloads report here; the live view shows a progress bar from it
    downloads = run.run_dir / "download-progress.jsonl"
    run.extravars["provision_progress_file"] = str(downloads)
    with ProgressView(run.hosts, "upgrade" + (" (check mode)" if check_mode else ""), err,
                      downloads=downloads) as view:
        run.on_change = view.update
        result = run.run()
    doc = outcome.build("upgrade", result, hosts, started, datetime.now(UTC), check_mode=check_mode)
    report.write(doc, result.run_dir)
    if not result.interrupted and not check_mode:
        _release_locks(hosts, lock_id, [h.name for h in result.hosts.values() if h.status == "failed"], options)
    out.print(report.markdown(doc).split("\n## ")[0], markup=False, soft_wrap=True)
    out.print(f"report: {result.run_dir / 'report.html'}", markup=False)
    if as_json:
        _emit_json(doc)
    if result.interrupted:
        err.print("interrupted: each host's state is in the report; `provision upgrade` resumes from there")
        raise typer.Exit(130)
    raise typer.Exit(report.exit_code(doc))


def artifact_lock_path(inventory: Path) -> Path:
    """rocm-provision.lock beside the inventory: in the inventory file's directory, or beside an inventory
    directory (inside it, Ansible would try to read it as an inventory source)."""
    return inventory.resolve().parent / "rocm-provision.lock"


def _release_locks(inventory: Path, lock_id: str, failed: list[str], options: AnsibleOptions | None = None) -> None:
    """Release the host lock on hosts that failed mid-run: upgrade.yml's last play never reaches them.

    Only a lock with this run's id is removed. An interrupted run releases nothing: the next run from this
    controller takes over a lock whose ansible-playbook is gone."""
    from provision.runner import PlaybookRun

    if not failed:
        return
    run = PlaybookRun("unlock.yml", inventory, hosts=failed, limit=",".join(failed),
                      extravars={"rocm_preflight_lock_run_id": lock_id}, options=options)
    result = run.run()
    stuck = sorted(n for n, h in result.hosts.items() if h.status in ("failed", "unreachable"))
    if stuck:
        err.print(f"[yellow]the host lock of this run could not be released on {escape(', '.join(stuck))}; "
                  "the next run from this controller takes it over[/yellow]")


@app.command("verify")
def verify(
    hosts: HostsOption,
    limit: LimitOption = None,
    forks: ForksOption = None,
    as_json: JsonOption = False,
    extra_vars: ExtraVarsOption = None,
    vault_password_file: VaultFileOption = None,
    ask_vault_pass: AskVaultOption = False,
    ask_become_pass: AskBecomeOption = False,
    verbose: VerboseOption = 0,
) -> None:
    """Run the crash-isolated convolution verification suite on every host and report per host and per case.

    Changes nothing but the suite's own files under /opt/rocm-provision. Exit 0 when every host passes.

    Example: `provision verify --hosts lab.ini`
    """
    from provision.progress import ProgressView
    from provision.runner import PlaybookRun

    if as_json:
        _human_output_to_stderr()
    options = _ansible_options(extra_vars, vault_password_file, ask_vault_pass, ask_become_pass, verbose)
    lab = _load(hosts, limit, options)
    started = datetime.now(UTC)
    run = PlaybookRun("verify.yml", hosts, hosts=[h.name for h in lab.hosts], limit=limit, forks=forks,
                      options=options)
    run.extravars["conv_verify_fetch_dir"] = str(run.run_dir / "verify")
    with ProgressView(run.hosts, "verify", err) as view:
        run.on_change = view.update
        result = run.run()
    doc = outcome.build("verify", result, hosts, started, datetime.now(UTC))
    report.write(doc, result.run_dir)
    out.print(report.markdown(doc).split("\n## ")[0], markup=False, soft_wrap=True)
    out.print(f"report: {result.run_dir / 'report.html'}", markup=False)
    if as_json:
        _emit_json(doc)
    raise typer.Exit(130 if result.interrupted else report.exit_code(doc))


@app.command("report")
def report_cmd(
    run: Annotated[str, typer.Argument(help="A run directory, a run id under the runs directory, or `latest`.")]
    = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON.")] = False,
    render: Annotated[bool, typer.Option(
        "--render", help="Render junit.xml, report.md and report.html again from report.json (e.g. after an "
                         "upgrade of rocm-provision); without it nothing is written.")] = False,
) -> None:
    """Summarise a past run (the summary table, failures first, and where its files are); re-render on request.

    Runs live in ~/.local/state/rocm-provision/runs (or $PROVISION_RUNS_DIR), one directory per run;
    report.json is the source of the other files. Exit code: 0 when every host ended done,
    fallback-applied, planned, blocked or skipped; 1 otherwise.

    Examples: `provision report`, `provision report 20261126T061909Z-upgrade --json`,
    `provision report latest --render`
    """
    from provision.runner import runs_dir

    base = runs_dir()
    if run == "latest":
        candidates = sorted(p for p in base.iterdir() if (p / "report.json").is_file())
        if not candidates:
            raise InputError(f"no run with a report under {base}")
        run_dir = candidates[-1]
    else:
        run_dir = Path(run) if Path(run).exists() else base / run
    doc = report.load(run_dir)
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    if render:
        report.write(doc, folder)
    if as_json:
        _emit_json(doc)
    else:
        out.print(report.markdown(doc).split("\n## ")[0], markup=False, soft_wrap=True)
        stale = report.stale_files(folder)
        out.print(f"report: {folder / 'report.html'} (also report.md, junit.xml; source report.json)", markup=False)
        if stale:
            err.print(f"[yellow]{escape(', '.join(stale))} missing or older than report.json: "
                      f"`provision report {escape(str(folder))} --render` writes them again[/yellow]")
    raise typer.Exit(report.exit_code(doc))


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _usage(argv: list[str]) -> tuple[str, str] | None:
    """The usage line and command path of the (sub)command that argv names, e.g. ("Usage: provision upgrade
    [OPTIONS]", "provision upgrade"), to show under an error found once the command had started."""
    try:
        command: Any = typer.main.get_command(app)
        path = ["provision"]
        for word in argv:
            commands = getattr(command, "commands", None)
            if not commands or word.startswith("-") or word not in commands:
                break
            command, path = commands[word], [*path, word]
        ctx = command.make_context(" ".join(path), [], resilient_parsing=True)
        return str(ctx.get_usage()), " ".join(path)
    except Exception:  # the usage is a courtesy: never let it hide the error itself
        return None


def _show_usage_error(message: str, usage: tuple[str, str] | None) -> None:
    """A usage error: the command's usage, where to find help, and one line saying what was wrong."""
    if usage is not None:
        err.print(usage[0], markup=False, highlight=False)
        err.print(f"Try '{usage[1]} --help' for help.", markup=False, highlight=False)
    err.print("[red]error:[/red] ", end="")
    err.print(message, markup=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: turn expected errors into a message and an exit code, never a traceback.

    Usage errors (a missing or unknown option, a bad value, an unknown command, a file that is not there) exit 2
    with the command's usage and one line saying what was wrong; a bare `provision` shows the help (exit 2)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops a run as cleanly as Ctrl-C does
    try:
        code = app(standalone_mode=False)  # with standalone_mode off, Typer returns typer.Exit codes
        sys.exit(code if isinstance(code, int) else 0)
    except typer.TyperException as exc:  # Typer's command-line errors: UsageError, BadParameter, NoSuchOption...
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already (a bare command or group)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        usage = (str(ctx.get_usage()), str(ctx.command_path)) if ctx is not None else _usage(sys.argv[1:])
        _show_usage_error(exc.format_message(), usage)
        sys.exit(exc.exit_code)
    except InventoryError as exc:  # a whole list of problems in a file: the usage would only hide them
        err.print("[red]error:[/red] ", end="")
        err.print(str(exc), markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except InputError as exc:  # a bad value the command itself found: a usage error too
        _show_usage_error(str(exc), _usage(sys.argv[1:]))
        sys.exit(exc.exit_code)
    except ProvisionError as exc:
        err.print("[red]error:[/red] ", end="")
        err.print(redact_text(str(exc)), markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, EOFError):
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # anything unexpected
        if os.environ.get("PROVISION_DEBUG"):
            raise
        err.print("[red]internal error:[/red] ", end="")
        err.print(f"{type(exc).__name__}: {redact_text(str(exc))}\n"
                  "Re-run with PROVISION_DEBUG=1 for a traceback, and please report it.", markup=False)
        sys.exit(70)
