"""Typer commands: `provision lab up|status|down` (mounted by provision.cli)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from provision.errors import ProvisionError
from provision.lab.paths import ENV_LAB_DIR, default_lab_dir

if TYPE_CHECKING:
    from provision.lab.lab import Lab

app = typer.Typer(
    name="lab",
    help="A container lab of simulated AMD GPU workstations (podman + loopback SSH + a signed mirror).",
    no_args_is_help=True,
    add_completion=False,
)
# piped or redirected: tables unwrapped, one row a line (as provision.cli does)
console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 100_000)
err_console = Console(stderr=True, highlight=False, emoji=False)

LabDirOption = typer.Option(None, "--lab-dir", help=f"Lab state directory (default: ${ENV_LAB_DIR} or "
                            "~/.cache/rocm-provision/lab).", envvar=ENV_LAB_DIR)


def _lab(lab_dir: Path | None, verbose: bool = True) -> Lab:
    from provision.lab.lab import Lab  # imported here: `provision --help` stays fast (bench_controller.py)

    root = lab_dir.expanduser().resolve() if lab_dir else default_lab_dir()
    return Lab(root, log=(lambda msg: err_console.print(f"[dim]{msg}[/dim]")) if verbose else (lambda _: None))


def _fail(exc: ProvisionError) -> SystemExit:
    # SystemExit, not typer.Exit: click run with standalone_mode=False (as provision.cli.main does) turns
    # typer.Exit into a return value, and the exit code would be lost.
    err_console.print("[bold red]error:[/bold red] ", end="")
    err_console.print(str(exc), soft_wrap=True, markup=False)
    return SystemExit(exc.exit_code)


@app.command()
def up(
    hosts: int = typer.Option(4, "--hosts", "-n", help="Number of hosts (cycles through the 4 host templates)."),
    first_address: str = typer.Option("127.0.0.2", help="Loopback address of the first host (127.0.0.0/8)."),
    mirror_port: int | None = typer.Option(None, help="Port for the mirror on 127.0.0.1 (default: keep/pick)."),
    lab_dir: Path | None = LabDirOption,
) -> None:
    """Bring the lab up (or bring it back to its asked state): hosts, mirror, inventory."""
    try:
        result = _lab(lab_dir).up(hosts=hosts, first_address=first_address, mirror_port=mirror_port)
    except ProvisionError as exc:
        raise _fail(exc) from None
    console.print(f"mirror: {result.base_url} (stands in for https://repo.radeon.com)")
    for host in result.hosts:
        kept = "kept" if host.reused else "new"
        console.print(f"[bold]{host.name}[/bold]  {host.address}:2222  ({kept})")
        console.print(f"    {host.description}", soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"up in {result.seconds['total']:.1f} s (hosts {result.seconds['hosts']:.1f} s)")
    console.print(f"inventory: {result.inventory}")
    console.print(f"try: ansible -i {result.inventory} all -m ansible.builtin.setup -a filter=ansible_distribution*")


@app.command()
def add(
    host: list[str] = typer.Option(..., "--host", help="NAME=TEMPLATE@ADDRESS, e.g. "
                                   "m-navi10=ws-navi10@127.0.0.40 (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the hosts as JSON (for scripts such as Molecule)."),
    lab_dir: Path | None = LabDirOption,
) -> None:
    """Add hosts made from a template under their own name and address; the lab's other hosts stay as they are.

    Reuses the lab dir's cached base image and its mirror (started if needed). A host that is already running
    and was built from the same inputs is kept; `provision lab rm NAME` removes one."""
    requests = []
    for item in host:
        name, _, rest = item.partition("=")
        template, _, address = rest.partition("@")
        if not (name and template and address):
            err_console.print(f"[bold red]error:[/bold red] --host {item!r} is not NAME=TEMPLATE@ADDRESS")
            raise SystemExit(2)
        requests.append((name, template, address))
    try:
        result = _lab(lab_dir, verbose=not json_out).add(requests)
    except ProvisionError as exc:
        raise _fail(exc) from None
    if json_out:
        console.print_json(data={
            "inventory": str(result.inventory), "base_url": result.base_url,
            "hosts": [{"name": h.name, "address": h.address, "container": h.container, "reused": h.reused}
                      for h in result.hosts]})
        return
    for info in result.hosts:
        console.print(f"[bold]{info.name}[/bold]  {info.address}:2222  ({'kept' if info.reused else 'new'})")
    console.print(f"inventory: {result.inventory}")


@app.command()
def rm(
    names: list[str] = typer.Argument(..., help="Host names to remove."),
    lab_dir: Path | None = LabDirOption,
) -> None:
    """Remove only the named hosts; the mirror, the cached image and the other hosts stay."""
    try:
        removed = _lab(lab_dir, verbose=False).remove(names)
    except ProvisionError as exc:
        raise _fail(exc) from None
    for name in removed:
        console.print(f"removed host {name}")
    if not removed:
        console.print("no such host is running; nothing to remove")


@app.command()
def status(lab_dir: Path | None = LabDirOption) -> None:
    """Show whether the lab is up: mirror, each host's container and sshd. Exit 1 when it is not up."""
    try:
        result = _lab(lab_dir, verbose=False).status()
    except ProvisionError as exc:
        raise _fail(exc) from None
    if not result.hosts and not result.stray_containers:
        console.print(f"lab is down (lab dir {result.lab_dir})")
        raise SystemExit(1)
    console.print(f"mirror: {result.base_url or '-'} {'[green]ok[/green]' if result.mirror_ok else '[red]down[/red]'}")
    table = Table()
    for column in ("host", "address", "container", "sshd"):
        table.add_column(column)
    for host in result.hosts:
        table.add_row(host.name, host.address, host.state, "[green]up[/green]" if host.ssh else "[red]no[/red]")
    console.print(table)
    for stray in result.stray_containers:
        console.print(f"[yellow]stray container of this lab:[/yellow] {stray} (`provision lab down` removes it)")
    if result.inventory:
        console.print(f"inventory: {result.inventory}")
    console.print("lab is up" if result.up else "lab is [red]not fully up[/red]: run `provision lab up`")
    if not result.up:
        raise SystemExit(1)


@app.command()
def down(
    purge: bool = typer.Option(False, help="Also remove the cached images and the whole lab dir."),
    lab_dir: Path | None = LabDirOption,
) -> None:
    """Remove everything the lab made (containers, mirror server and tree, keys, inventory)."""
    try:
        result = _lab(lab_dir, verbose=False).down(purge=purge)
    except ProvisionError as exc:
        raise _fail(exc) from None
    if not (result.removed_containers or result.stopped_mirror or result.removed_paths):
        console.print("lab is already down; nothing to remove")
        return
    for name in result.removed_containers:
        console.print(f"removed container {name}")
    if result.stopped_mirror:
        console.print("stopped the mirror server")
    for path in result.removed_paths:
        console.print(f"removed {path}")
    for tag in result.removed_images:
        console.print(f"removed image {tag}")
    if not purge:
        console.print("kept the cached base image and wheels (`provision lab down --purge` removes them)")
