"""Read a lab inventory with ansible-core's own loader and validate every host's settings.

Nothing here connects to a host. Problems are collected across the whole inventory so a user
fixes them in one pass; `load_lab` raises one InventoryError (exit code 2) that lists them all.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from provision.catalog import catalog, gfx_from_version
from provision.envcatalog import env_catalog
from provision.errors import InputError, InventoryError, Problem
from provision.specs import ALLOWED, PREFIX, RUN_VARIABLES, SECRET_FIELDS, VARIABLES, HostSpec

if TYPE_CHECKING:
    from provision.ansible_options import AnsibleOptions

# Only file formats a user writes by hand. Script and plugin-config inventories would run code or
# reach the network during what must be a side-effect-free validation.
_ANSIBLE_ENV = {
    "ANSIBLE_INVENTORY_ENABLED": "ini,yaml,toml",
    "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1",
    "ANSIBLE_LOCALHOST_WARNING": "0",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
}
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?\Z"
)
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?\Z")  # \Z: `$` would let a trailing newline through
_CONNECTIONS = {"ssh", "local", "paramiko", "paramiko_ssh", "smart", "ansible.builtin.ssh",
                "ansible.builtin.local", "ansible.builtin.paramiko_ssh"}
_TEMPLATE_RE = re.compile(r"\{\{|\{%")
_CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection")
_NO_VAULT_PASSWORD = ("is encrypted with Ansible Vault and no vault password was given: use --vault-password-file "
                      "FILE, --ask-vault-pass or ANSIBLE_VAULT_PASSWORD_FILE")
_INVENTORY_NAME_RE = re.compile(r"^(?!\.)(?!-)[A-Za-z0-9_.:-]{1,253}\Z")
_SCOPE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")  # an interface name (IFNAMSIZ 16) or a number
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


@dataclass
class HostEntry:
    name: str
    groups: list[str]
    address: str
    port: int | None
    user: str | None
    connection: str
    spec: HostSpec
    warnings: list[str] = field(default_factory=list)
    templated: list[str] = field(default_factory=list)  # variables left to run time

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": self.groups,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "connection": self.connection,
            "spec": self.spec.to_vars(),
            "warnings": self.warnings,
            "templated": self.templated,
        }


@dataclass
class Lab:
    source: str
    hosts: list[HostEntry]  # the hosts selected (all of them, or those matching --limit), each valid
    skipped: list[str] = field(default_factory=list)  # warnings: hosts outside --limit that are not valid


def _origin(value: Any) -> str | None:
    """File (and line) a value came from, from ansible-core's data tags when available."""
    try:
        from ansible._internal._datatag._tags import Origin  # ansible-core >= 2.19

        tag = Origin.get_tag(value)
    except Exception:  # older or newer ansible-core: just lose the line number
        return None
    return str(tag) if tag else None


@contextlib.contextmanager
def _ansible_quiet() -> Iterator[list[str]]:
    """Collect the loader's parse errors instead of letting Ansible print them as warnings."""
    saved = {k: os.environ.get(k) for k in _ANSIBLE_ENV}
    os.environ.update(_ANSIBLE_ENV)
    captured: list[str] = []
    from ansible.inventory import manager as inv_manager

    display = inv_manager.display
    original = display.error_as_warning, display.warning

    def grab_error(msg: str, exception: BaseException | None = None, **_: Any) -> None:
        detail = str(exception).strip().splitlines()[0] if exception else ""
        captured.append(f"{msg} {detail}".strip())

    def grab_warning(msg: str, *_: Any, **__: Any) -> None:
        captured.append(str(msg))

    display.error_as_warning, display.warning = grab_error, grab_warning  # type: ignore[method-assign]
    try:
        yield captured
    finally:
        display.error_as_warning, display.warning = original  # type: ignore[method-assign]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_lab(source: str | os.PathLike[str], limit: str | None = None, options: AnsibleOptions | None = None) -> Lab:
    """Load and validate an inventory file or directory. Raises InventoryError listing every problem.

    With `limit` (an Ansible --limit pattern) only the hosts it selects must be valid: the problems of the
    others come back as `Lab.skipped` warnings. `options` brings vault secrets and extra vars (-e), which take
    part in validation exactly as they will in the playbook run; vaulted values are validated decrypted."""
    path = Path(source)
    if not path.exists():
        raise InventoryError([Problem(f"inventory not found: {path}", file=str(path),
                                      allowed="an INI or YAML inventory file, or a directory of them")])
    from provision import inventory_guard

    inventory_guard.check(path)  # before anything reads it: a FIFO, device or huge file is refused at once
    if path.is_file():
        try:
            path.read_bytes()
        except OSError as exc:
            raise InventoryError([Problem(f"cannot read inventory: {exc.strerror}", file=str(path))]) from exc

    with _ansible_quiet() as captured:
        from ansible import constants as C
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager

        C.INVENTORY_ENABLED = _ANSIBLE_ENV["ANSIBLE_INVENTORY_ENABLED"].split(",")
        C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
        loader = DataLoader()
        if options is not None:
            options.apply(loader)
        try:
            inventory = InventoryManager(loader=loader, sources=[str(path)])
        except AnsibleError as exc:
            plugin = "'yaml' plugin" if path.suffix.lower() in (".yml", ".yaml", ".json") else "'ini' plugin"
            mine = [c for c in captured if plugin in c]
            reasons = "; ".join(dict.fromkeys(mine or captured)) or str(exc)
            raise InventoryError([Problem(f"cannot parse the inventory: {reasons}", file=str(path),
                                          allowed="Ansible INI or YAML inventory syntax")]) from None
        hosts = inventory.get_hosts()
        if not hosts:
            raise InventoryError([Problem("the inventory defines no hosts", file=str(path),
                                          allowed="at least one host")])
        selected = {h.name for h in hosts}
        if limit:
            inventory.subset(limit)
            selected = {h.name for h in inventory.get_hosts()}
            if not selected:
                raise InputError(f"--limit {limit!r} matches no host of {path} (give host or group names, or "
                                 "patterns such as 'ws-*' or 'gpu_lab:!instinct')")
        try:
            variables = VariableManager(loader=loader, inventory=inventory)
            raw = [(h, variables.get_vars(host=h, include_hostvars=False)) for h in hosts]
        except AnsibleError as exc:  # group_vars/host_vars ansible-core cannot read (vault, YAML, shape)
            raise InventoryError([_ansible_problem(exc, path)]) from None

    problems: list[Problem] = []
    skipped: list[str] = []
    entries = []
    for host, hostvars in raw:
        found: list[Problem] = []
        entry = _validate_host(host.name, [g.name for g in host.get_groups() if g.name != "all"],
                               hostvars, str(path), found)
        if host.name not in selected:
            skipped += [f"skipped (not in --limit): {p.render()}" for p in found]
            continue
        problems += found
        if entry:
            entries.append(entry)
    problems += _cross_host_problems(entries, str(path))
    if problems:
        raise InventoryError(problems)
    return Lab(source=str(path), hosts=entries, skipped=skipped)


def _is_template(value: Any, depth: int = 0) -> bool:
    """A Jinja2 template anywhere in the value (left to ansible-playbook: never rendered here)."""
    if depth > 20:
        return False
    if isinstance(value, str):
        return bool(_TEMPLATE_RE.search(value))
    if isinstance(value, dict):
        return any(_is_template(k, depth + 1) or _is_template(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_is_template(v, depth + 1) for v in value)
    return False


def _ansible_problem(exc: Exception, path: Path) -> Problem:
    """An ansible-core error as a Problem naming file:line (from its origin tag or its message) and the reason."""
    where = None
    obj = getattr(exc, "obj", None)
    if obj is not None:
        where = _origin(obj)
    text = " ".join(str(getattr(exc, "message", "") or exc).split())
    match = re.search(r"(/[^\s'\"]+?)(?:'|\"|,| line | \(|:(\d+))", text)
    if where is None and match:
        where = match.group(1) + (f":{match.group(2)}" if match.group(2) else "")
    if "vault" in text.lower() and ("password" in text.lower() or "secrets" in text.lower()):
        text = _NO_VAULT_PASSWORD
        if where is None:  # name the vaulted file ansible-core could not open
            base = path if path.is_dir() else path.parent
            for folder in ("group_vars", "host_vars"):
                for file in sorted((base / folder).rglob("*")) if (base / folder).is_dir() else []:
                    if file.is_file() and file.read_bytes()[:14] == b"$ANSIBLE_VAULT":
                        where = str(file)
                        break
                if where:
                    break
    return Problem(f"cannot read the inventory's variables: {text[:400]}", file=where or str(path),
                   allowed="Ansible INI or YAML inventory and group_vars/host_vars files")


def _validate_host(name: str, groups: list[str], hostvars: dict[str, Any], file: str,
                   problems: list[Problem]) -> HostEntry | None:
    before = len(problems)
    origins = {key: _origin(value) for key, value in hostvars.items()
               if key.startswith(PREFIX) or key in _CONNECTION_VARS}
    vaulted: set[str] = set()  # decrypted values: validated like any other, never shown

    def problem(variable: str | None, message: str, value: Any = None, allowed: str | None = None) -> None:
        where = origins.get(variable) if variable else None
        problems.append(Problem(message, file=where or file, host=name, variable=variable,
                                value=None if variable in vaulted else value, allowed=allowed))

    if not _INVENTORY_NAME_RE.match(name):
        problem(None, f"host name {name!r} cannot be used: it becomes a file name on the controller (run "
                "directories, reports), so it may not hold /, .. or characters outside letters, digits and . _ - :",
                None, "letters, digits and . _ - : (at most 253 characters, not starting with . or -)")
    hostvars = dict(hostvars)
    undecrypted = False
    for key in origins:
        try:
            revealed = _reveal(hostvars[key])
        except _VaultError as exc:
            problem(key, str(exc))
            hostvars.pop(key)
            undecrypted = True
            continue
        if revealed is not hostvars[key]:
            vaulted.add(key)
            hostvars[key] = revealed

    templated: list[str] = [key for key in _CONNECTION_VARS if key in hostvars and _is_template(hostvars[key])]
    address = str(hostvars.get("ansible_host", name))
    if "ansible_host" not in templated and not _is_host_address(address):
        problem("ansible_host" if "ansible_host" in hostvars else None,
                "is not a host name or IP address" if "ansible_host" in hostvars
                else f"host name {name!r} is not a valid host name and no ansible_host is set",
                address, "a DNS name or an IPv4/IPv6 address")
    port = _int_or_none(hostvars.get("ansible_port"))
    if "ansible_port" in hostvars and "ansible_port" not in templated and (port is None or not 1 <= port <= 65535):
        problem("ansible_port", "is not a TCP port", hostvars.get("ansible_port"), "an integer from 1 to 65535")
    user = hostvars.get("ansible_user")
    if "ansible_user" in templated:
        user = None
    elif user is not None and (not isinstance(user, str) or not _USER_RE.match(user)):
        problem("ansible_user", "is not a valid user name", user,
                "a Linux user name (lower case letters, digits, _ . -)")
    connection = str(hostvars.get("ansible_connection", "ssh"))
    if "ansible_connection" not in templated and connection not in _CONNECTIONS:
        problem("ansible_connection", "is not a connection this tool supports", connection,
                ", ".join(sorted(_CONNECTIONS)))

    warnings: list[str] = []
    settings: dict[str, Any] = {}
    for key, value in hostvars.items():
        if not key.startswith(PREFIX) or key.startswith("provision_lab_") or key in RUN_VARIABLES:
            continue
        if key not in VARIABLES:
            close = difflib.get_close_matches(key, VARIABLES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problem(key, f"is not a variable this tool knows{hint}", None, ", ".join(VARIABLES))
            continue
        if _is_template(value):
            templated.append(key)
            continue
        settings[key[len(PREFIX):]] = value

    from provision import redact

    redact.remember(*(v for k, v in settings.items() if k in SECRET_FIELDS))
    spec = None
    try:
        spec = HostSpec(**settings)
    except ValidationError as exc:
        for err in exc.errors():
            fld = str(err["loc"][0]) if err["loc"] else ""
            if not fld and undecrypted:  # e.g. "username and password go together": the password is there, vaulted
                continue
            var = PREFIX + fld if fld else None
            message = err["msg"].removeprefix("Value error, ")
            value = None if fld in SECRET_FIELDS else settings.get(fld)
            problem(var, message, value, ALLOWED.get(fld))
    if spec is not None:
        _check_env(spec, problem, warnings)
        _check_override_vs_gpus(spec, problem)
    if len(problems) > before or spec is None:
        return None
    return HostEntry(name=name, groups=sorted(groups), address=address, port=port,
                     user=user if isinstance(user, str) else None, connection=connection, spec=spec,
                     warnings=warnings, templated=templated)


def _check_env(spec: HostSpec, problem: Any, warnings: list[str]) -> None:
    cat = env_catalog()
    var = PREFIX + "fallback_env"
    for name, value in spec.fallback_env.items():
        known = cat.get(name)
        if known is None:
            bogus = cat.not_real.get(name)
            if spec.allow_unknown_env:
                warnings.append(f"{name} is not in the env-var catalog; set anyway (provision_allow_unknown_env)")
                continue
            if bogus:
                instead = f"; the real variable is {bogus.instead}" if bogus.instead else ""
                problem(var, f"{name} is not read by MIOpen, HIP or PyTorch: {bogus.reason}{instead}",
                        name, "names from the env-var catalog, or set provision_allow_unknown_env: true")
            else:
                close = difflib.get_close_matches(name, list(cat.variables), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problem(var, f"{name} is not in the env-var catalog{hint}", name,
                        "names from the env-var catalog (`provision env list`), or provision_allow_unknown_env: true")
            continue
        bad = cat.value_problem(known, value)
        if bad:
            problem(var, f"{name}: {bad[0]}", value, bad[1])
        elif name == "AMD_DIRECT_DISPATCH" and value.strip().lower() in cat.true_tokens:
            warnings.append("AMD_DIRECT_DISPATCH=1 is a no-op: direct dispatch is already on by default on Linux")


def _check_override_vs_gpus(spec: HostSpec, problem: Any) -> None:
    override = spec.fallback_env.get("HSA_OVERRIDE_GFX_VERSION")
    if not override or not spec.expected_gpus:
        return
    try:
        forced = catalog().chip_for_gfx(gfx_from_version(override))
    except ValueError:
        return  # already reported as a bad value
    for pci_id in spec.expected_gpus:
        dev = catalog().device(pci_id)
        if dev and forced and dev.chip.generic != forced.generic:
            problem(PREFIX + "fallback_env",
                    f"HSA_OVERRIDE_GFX_VERSION={override} makes {pci_id} ({dev.chip.gfx}, {dev.chip.family}) run "
                    f"{forced.gfx} ({forced.family}) code: it crosses GPU generations, a known cause of memory "
                    "access faults", override,
                    "no override, or one within the GPU's own generation")


def _cross_host_problems(entries: list[HostEntry], file: str) -> list[Problem]:
    problems = []
    seen: dict[tuple[str, int | None], str] = {}
    local_hosts = [e.name for e in entries if e.connection in ("local", "ansible.builtin.local")]
    if len(local_hosts) > 1:
        problems.append(Problem(
            f"hosts {', '.join(local_hosts)} all use ansible_connection=local: they are the same machine, and "
            "upgrading it twice at once would run two package managers on it", file=file,
            variable="ansible_connection", allowed="at most one host with ansible_connection=local"))
    for entry in entries:
        if entry.connection in ("local", "ansible.builtin.local") or "ansible_host" in entry.templated:
            continue
        key = _machine_key(entry)
        if local_hosts and key == ("localhost", 22):  # this controller's own sshd
            problems.append(Problem(
                f"reaches this controller over SSH ({entry.address}) while host {local_hosts[0]} uses "
                "ansible_connection=local: both are the same machine, and upgrading it twice at once would run two "
                "package managers on it", file=file, host=entry.name, variable="ansible_host",
                value=entry.address, allowed="one inventory entry per machine"))
        if key in seen:
            problems.append(Problem(
                f"has the same address and port as host {seen[key]} (written differently): both names would "
                "upgrade one machine", file=file, host=entry.name, variable="ansible_host",
                value=f"{entry.address}:{entry.port or 22}", allowed="one inventory entry per machine"))
        seen.setdefault(key, entry.name)
    return problems


class _VaultError(Exception):
    pass


def _reveal(value: Any) -> Any:
    """A value with its Ansible Vault parts decrypted (the value itself when nothing in it is vaulted)."""
    from ansible.parsing.vault import EncryptedString, VaultSecretsContext

    if isinstance(value, EncryptedString):
        context = VaultSecretsContext.current(optional=True)
        if context is None or not context.secrets:
            raise _VaultError(_NO_VAULT_PASSWORD)
        try:
            return str(value)
        except Exception as exc:  # AnsibleVaultError and kin: wrong password, damaged ciphertext
            text = str(getattr(exc, "message", "") or exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            raise _VaultError("is encrypted with Ansible Vault and could not be decrypted with the vault "
                              f"password(s) given: {reason}") from None
    if isinstance(value, dict):
        items = {k: _reveal(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, list):
        revealed = [_reveal(v) for v in value]
        return value if all(a is b for a, b in zip(revealed, value, strict=True)) else revealed
    return value


def _int_or_none(value: Any) -> int | None:
    """A port as INI or YAML gives it; ASCII digits only (int() also reads '٢٢' or '２２', ssh does not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return None


def _is_host_address(value: str) -> bool:
    if "%" in value:  # an IPv6 scope id: Python's ipaddress accepts any text there, ssh gets it as an argument
        _, _, scope = value.partition("%")
        if not _SCOPE_ID_RE.match(scope):
            return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.match(value))


def _machine_key(entry: HostEntry) -> tuple[str, int]:
    """One spelling per machine: IPs compressed (::1 = 0:0:0:0:0:0:0:1, v4-mapped = v4), names lower case
    without a trailing dot, the ssh port explicit (22 when unset). 127.0.0.1, ::1 and `localhost` are one
    name ("localhost"); other 127.x addresses stay distinct (each can be its own sshd, as in the lab)."""
    address = entry.address.strip()
    port = entry.port or 22
    try:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip == ipaddress.ip_address("127.0.0.1") or ip == ipaddress.ip_address("::1"):
            return ("localhost", port)
        return (ip.compressed, port)
    except ValueError:
        name = address.lower().rstrip(".")
        return ("localhost" if name in _LOOPBACK_NAMES else name, port)


def spec_from_vars(host: str, provision_vars: dict[str, Any], file: str = "inventory") -> HostSpec:
    """Validate one host's `provision_*` variables as they reach a playbook (e.g. in the preflight filter)."""
    problems: list[Problem] = []
    entry = _validate_host(host, [], {k: v for k, v in provision_vars.items() if k.startswith(PREFIX)}, file,
                           problems)
    if problems or entry is None:
        raise InventoryError(problems)
    return entry.spec
