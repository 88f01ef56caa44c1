"""`provision lab up|status|down`: bring the whole lab to a state, report it, remove it. All idempotent."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.lab import image, mirror, seed, ssh
from provision.lab.errors import LabError, LabUsageError
from provision.lab.hosts import SMALL_FS_MIB, SSH_PORT, HostSpec, default_hosts, named_hosts
from provision.lab.inventory import InventoryInput, render
from provision.lab.paths import LabPaths
from provision.lab.podman import LABEL_HOST, LABEL_LAB, Podman

STATE_VERSION = 1
LABEL_BUILD = "io.rocm-provision.lab.build"
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class HostInfo:
    name: str
    address: str
    container: str
    os: str
    description: str
    gpus: list[str]
    reused: bool = False


@dataclass
class UpResult:
    inventory: Path
    base_url: str
    hosts: list[HostInfo]
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)


@dataclass
class HostStatus:
    name: str
    address: str
    container: str
    state: str  # podman's state, or "missing"
    ssh: bool


@dataclass
class StatusResult:
    lab_dir: Path
    up: bool
    inventory: Path | None
    base_url: str | None
    mirror_ok: bool
    hosts: list[HostStatus]
    stray_containers: list[str]


@dataclass
class DownResult:
    removed_containers: list[str]
    stopped_mirror: bool
    removed_paths: list[str]
    removed_images: list[str]


class Lab:
    def __init__(self, lab_dir: Path, log: Log = _quiet) -> None:
        self.paths = LabPaths(lab_dir.resolve())
        self.log = log

    # -- state --------------------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.paths.state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("version") == STATE_VERSION else {}

    def _save_state(self, data: dict[str, Any]) -> None:
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.paths.state)

    def container_name(self, host: str) -> str:
        return f"rpl-{self.paths.lab_id}-{host}"

    # -- up -----------------------------------------------------------------------------------------------
    def up(self, hosts: int = 4, first_address: str = "127.0.0.2", mirror_port: int | None = None) -> UpResult:
        return self._bring_up(default_hosts(hosts, first_address), mirror_port, prune=True)

    def add(self, requests: Sequence[tuple[str, str, str]], mirror_port: int | None = None) -> UpResult:
        """Add (or keep) hosts `(name, template, address)` next to the lab's other hosts, which stay as they are.

        Shares the lab dir's base image and mirror (started if needed). Molecule's shared create step uses it."""
        specs = named_hosts(requests)
        others = [h for h in self.load_state().get("hosts", []) if h["name"] not in {s.name for s in specs}]
        busy = {h["address"]: h["name"] for h in others}
        for spec in specs:
            if spec.address in busy:
                raise LabUsageError(f"{spec.address} is already used by lab host {busy[spec.address]}")
        return self._bring_up(specs, mirror_port, prune=False)

    def remove(self, names: Sequence[str]) -> list[str]:
        """Remove the named hosts only; the mirror, the image and every other host stay. Returns what went."""
        state = self.load_state()
        if not self.paths.root.exists():
            return []
        podman = Podman(self.paths.containers_conf)
        removed = []
        for container in podman.containers(self.paths.lab_id):
            host = str(container.get("Labels", {}).get(LABEL_HOST))
            if host in names:
                podman.run(["rm", "-f", "-t", "0", str(container["Id"])], what=f"removing lab host {host}")
                removed.append(host)
        for name in names:
            if (self.paths.hosts / name).is_dir():
                shutil.rmtree(self.paths.hosts / name)
        if state.get("hosts"):
            state["hosts"] = [h for h in state["hosts"] if h["name"] not in names]
            self._save_state(state)
            specs = self._state_specs(state)
            keep = {f"[{s.address}]:{SSH_PORT} " for s in specs}
            if self.paths.known_hosts.exists():
                lines = [ln for ln in self.paths.known_hosts.read_text().splitlines()
                         if any(ln.startswith(k) for k in keep)]
                self.paths.known_hosts.write_text("".join(f"{ln}\n" for ln in lines))
            if self.paths.inventory.exists():
                self.paths.inventory.write_text(self._inventory(specs, state))
        return removed

    def _bring_up(self, specs: list[HostSpec], mirror_port: int | None, prune: bool) -> UpResult:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        podman = Podman(self.paths.containers_conf)
        state = self.load_state()
        timings: dict[str, float] = {}
        notes: list[str] = []
        start = time.monotonic()

        port, pid = self._mirror_port(state, mirror_port)
        base_url = f"http://127.0.0.1:{port}"

        with ThreadPoolExecutor(max_workers=2) as pool:
            base_future = pool.submit(self._images, podman, specs)
            t0 = time.monotonic()
            self.log(f"mirror: building stand-in packages for {base_url} (cached after the first time)")
            built = mirror.build(self.paths, base_url)
            wheel_set = mirror.publish_wheels(self.paths)
            timings["mirror"] = time.monotonic() - t0
            if wheel_set.note:
                notes.append(wheel_set.note)
            images, built_base = base_future.result()
        timings["images"] = time.monotonic() - start
        if built_base:
            self.log("base image: built with mmdebstrap and cached")

        if pid is None:
            pid = mirror.start(self.paths, port)
        state.update(version=STATE_VERSION, lab_dir=str(self.paths.root), lab_id=self.paths.lab_id,
                     mirror={"pid": pid, "port": port, "url": base_url},
                     key={"fingerprint": built.fingerprint, "url": f"{base_url}/{mirror.KEY_PATH}",
                          "rogue_fingerprint": built.rogue_fingerprint})
        self._save_state(state)

        public_key = ssh.ensure_key(self.paths.ssh_key)
        t0 = time.monotonic()
        infos = self._hosts(podman, specs, images, base_url, public_key, prune)
        timings["hosts"] = time.monotonic() - t0

        entries = [{"name": i.name, "address": i.address, "container": i.container, "os": i.os,
                    "description": i.description, "gpus": i.gpus, "template": spec.template or spec.name}
                   for i, spec in zip(infos, specs, strict=True)]
        if not prune:
            mine = {e["name"] for e in entries}
            entries = [h for h in state.get("hosts", []) if h["name"] not in mine] + entries
        state["hosts"] = entries
        state["inventory"] = str(self.paths.inventory)
        state["torch_version"] = wheel_set.torch_version
        all_specs = self._state_specs(state) if not prune else specs
        self._write_known_hosts(podman, all_specs)
        self.paths.inventory.write_text(self._inventory(all_specs, state))
        self._save_state(state)
        timings["total"] = time.monotonic() - start
        return UpResult(self.paths.inventory, base_url, infos, timings, notes)

    def _mirror_port(self, state: dict[str, Any], wanted: int | None) -> tuple[int, int | None]:
        """(port, pid of a running server to keep, or None to start one)."""
        current = state.get("mirror") or {}
        port, pid = current.get("port"), current.get("pid")
        running = (isinstance(pid, int) and mirror.pid_is_server(pid, self.paths.mirror)
                   and isinstance(port, int) and mirror.healthy(port))
        if running and (wanted is None or wanted == port):
            return int(port), int(pid)
        if running:
            mirror.stop(int(pid), self.paths.mirror)
        if wanted is not None:
            if not mirror.port_free(wanted):
                raise LabError(f"127.0.0.1:{wanted} is already in use, so the lab mirror cannot listen there; "
                               "stop what listens there or pass another --mirror-port")
            return wanted, None
        return mirror.pick_port(port if isinstance(port, int) else None), None

    def _images(self, podman: Podman, specs: list[HostSpec]) -> tuple[dict[str, str], bool]:
        base, built = image.ensure_base_image(podman, self.paths.images)
        return {kind: image.ensure_os_image(podman, base, kind) for kind in {s.os for s in specs}}, built

    def _state_specs(self, state: dict[str, Any]) -> list[HostSpec]:
        """The specs of the hosts recorded in the state (for the inventory and known_hosts of `add`/`remove`)."""
        specs = []
        for host in state.get("hosts", []):
            template = host.get("template") or host["name"]
            try:
                specs.append(named_hosts([(host["name"], template, host["address"])])[0])
            except LabUsageError:
                continue
        return specs

    def _inventory(self, specs: list[HostSpec], state: dict[str, Any]) -> str:
        base_url = str((state.get("mirror") or {}).get("url"))
        key = state.get("key") or {}
        return render(InventoryInput(specs, base_url, str(key.get("fingerprint")), str(key.get("url")),
                                     self.paths.ssh_key, self.paths.known_hosts, self.paths.root,
                                     state.get("torch_version")))

    def _hosts(self, podman: Podman, specs: list[HostSpec], images: dict[str, str], base_url: str,
               public_key: str, prune: bool = True) -> list[HostInfo]:
        existing = {str(c.get("Labels", {}).get(LABEL_HOST)): c for c in podman.containers(self.paths.lab_id)}
        wanted = {s.name for s in specs}
        for name, container in existing.items():
            if prune and name not in wanted:
                podman.run(["rm", "-f", "-t", "0", str(container["Id"])], what=f"removing lab host {name}")
        todo: list[HostSpec] = []
        infos: dict[str, HostInfo] = {}
        for spec in specs:
            info = HostInfo(spec.name, spec.address, self.container_name(spec.name), spec.os, spec.describe(),
                            [slot.model.pci_id for slot in spec.gpus])
            current = existing.get(spec.name)
            labels = (current or {}).get("Labels") or {}
            if (current and current.get("State") == "running"
                    and labels.get(LABEL_BUILD) == self._build_id(spec, images[spec.os], base_url)
                    and ssh.banner(spec.address, SSH_PORT)
                    and self._seeded(podman, info.container)):
                info.reused = True
            else:
                if current:
                    podman.run(["rm", "-f", "-t", "0", str(current["Id"])], what=f"removing stale host {spec.name}")
                todo.append(spec)
            infos[spec.name] = info
        for spec in todo:
            if not mirror.port_free(SSH_PORT, spec.address):
                raise LabError(f"{spec.address}:{SSH_PORT} is already in use, so lab host {spec.name} cannot run "
                               "its sshd there; stop what listens there or pass another --first-address")
        if todo:
            with ThreadPoolExecutor(max_workers=4) as pool:
                futures = [pool.submit(self._create_host, podman, spec, images[spec.os], base_url, public_key)
                           for spec in todo]
                errors = []
                for future in futures:
                    try:
                        future.result()
                    except LabError as exc:
                        errors.append(str(exc))
            if errors:
                raise LabError("\n".join(errors))
        return [infos[s.name] for s in specs]

    def _create_host(self, podman: Podman, spec: HostSpec, image_tag: str, base_url: str, public_key: str) -> None:
        seed_dir = self.paths.hosts / spec.name
        seed.write_seed_dir(seed_dir, spec, base_url, public_key)
        name = self.container_name(spec.name)
        self.log(f"{spec.name}: starting on {spec.address}:{SSH_PORT}")
        podman.run(["run", "-d", "--name", name, "--hostname", spec.name, "--network", "host",
                    "--label", f"{LABEL_LAB}={self.paths.lab_id}", "--label", f"{LABEL_HOST}={spec.name}",
                    "--label", f"{LABEL_BUILD}={self._build_id(spec, image_tag, base_url)}",
                    "-v", f"{seed_dir}:{seed.SEED_MOUNT}:ro",
                    *([f"--mount=type=tmpfs,destination={spec.small_fs},tmpfs-size={SMALL_FS_MIB}m"]
                      if spec.small_fs else []),
                    image_tag, "/bin/sh", f"{seed.SEED_MOUNT}/boot.sh"],
                   what=f"starting lab host {spec.name}")
        try:
            ssh.wait_for_sshd(spec.address, SSH_PORT)
        except LabError as exc:
            logs = podman.run(["logs", "--tail", "20", name], what="reading the host's log", check=False)
            raise LabError(f"{spec.name}: {exc}; its log says:\n{logs.stdout}{logs.stderr}") from exc
        self.log(f"{spec.name}: seeding ({spec.before})")
        try:
            podman.exec(name, ["/bin/bash", f"{seed.SEED_MOUNT}/seed.sh"],
                        what=f"seeding the before-state of {spec.name}", timeout=600)
        except LabError:
            podman.run(["rm", "-f", "-t", "0", name], what="removing the half-seeded host", check=False)
            raise

    def _build_id(self, spec: HostSpec, image_tag: str, base_url: str) -> str:
        """Everything a host was made from: a container is kept only while all of it is unchanged."""
        state = self.load_state()
        parts = [spec.spec_hash(), image_tag, base_url, mirror.recipe(),
                 str((state.get("key") or {}).get("fingerprint")), seed.seed_script(spec, base_url),
                 seed.BOOT, Path(seed.__file__).with_name("guest").joinpath("labhost.py").read_text()]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    @staticmethod
    def _seeded(podman: Podman, container: str) -> bool:
        done = podman.exec(container, ["test", "-e", seed.SEEDED_STAMP], what="checking the seed", check=False)
        return done.returncode == 0

    def _write_known_hosts(self, podman: Podman, specs: list[HostSpec]) -> None:
        lines = []
        for spec in specs:
            key = podman.exec(self.container_name(spec.name), ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                              what=f"reading {spec.name}'s host key").stdout
            lines.append(ssh.known_hosts_line(spec.address, SSH_PORT, key))
        self.paths.known_hosts.write_text("\n".join(lines) + "\n")

    # -- status -------------------------------------------------------------------------------------------
    def status(self) -> StatusResult:
        state = self.load_state()
        podman = Podman(self.paths.containers_conf) if self.paths.root.exists() else None
        containers = {}
        if podman is not None:
            containers = {str(c.get("Labels", {}).get(LABEL_HOST)): c for c in podman.containers(self.paths.lab_id)}
        port = (state.get("mirror") or {}).get("port")
        mirror_ok = isinstance(port, int) and mirror.healthy(port)
        hosts = []
        for host in state.get("hosts", []):
            current = containers.pop(host["name"], None)
            hosts.append(HostStatus(host["name"], host["address"], host["container"],
                                    str(current.get("State")) if current else "missing",
                                    ssh.banner(host["address"], SSH_PORT) is not None))
        stray = [str((c.get("Names") or ["?"])[0]) for c in containers.values()]
        up = bool(state.get("hosts")) and mirror_ok and all(h.state == "running" and h.ssh for h in hosts)
        inventory = self.paths.inventory if self.paths.inventory.exists() else None
        return StatusResult(self.paths.root, up, inventory, (state.get("mirror") or {}).get("url"), mirror_ok,
                            hosts, stray)

    # -- down ---------------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> DownResult:
        result = DownResult([], False, [], [])
        if not self.paths.root.exists():
            return result
        state = self.load_state()
        podman = Podman(self.paths.containers_conf)
        for container in podman.containers(self.paths.lab_id):
            name = str((container.get("Names") or [container["Id"]])[0])
            podman.run(["rm", "-f", "-t", "0", str(container["Id"])], what=f"removing lab container {name}")
            result.removed_containers.append(name)
        pid = (state.get("mirror") or {}).get("pid")
        if isinstance(pid, int):
            result.stopped_mirror = mirror.stop(pid, self.paths.mirror)
        made = [self.paths.inventory, self.paths.known_hosts.parent, self.paths.hosts, self.paths.mirror,
                self.paths.gnupg, self.paths.gnupg_rogue, self.paths.mirror_faults, self.paths.state,
                self.paths.build]
        if purge:
            for tag in self._lab_images(podman):
                podman.run(["rmi", "-f", tag], what=f"removing image {tag}", check=False)
                result.removed_images.append(tag)
            made = [self.paths.root]
        for path in made:
            if path.is_dir():
                shutil.rmtree(path)
                result.removed_paths.append(str(path))
            elif path.exists():
                path.unlink()
                result.removed_paths.append(str(path))
        return result

    @staticmethod
    def _lab_images(podman: Podman) -> list[str]:
        out = podman.run(["images", "--format", "{{.Repository}}:{{.Tag}}"], what="listing images").stdout
        return [line for line in out.split() if line.startswith("localhost/rocm-provision-lab-")]
