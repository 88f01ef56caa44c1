"""The options `provision` shares with ansible-playbook: Vault, extra vars, become password, verbosity.

They act twice, the same way both times: on the inventory `provision` validates before anything runs
(ansible-core's own DataLoader decrypts vaulted values and merges `-e` at Ansible's precedence), and on the
ansible-playbook runs that follow (the same flags on its command line; prompted passwords are answered through
ansible-runner's prompt matching, so they never touch a file or a command line).
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import InputError

# The prompts ansible-playbook shows (ansible.cli.CLI.setup_vault_secrets and CLI.ask_passwords with the default
# AGNOSTIC_BECOME_PROMPT); ansible-runner answers them from these patterns, as AWX does.
VAULT_PROMPT = r"^Vault password:\s*?$"
BECOME_PROMPT = r"^BECOME password:\s*?$"


@dataclass
class AnsibleOptions:
    extra_vars: list[str] = field(default_factory=list)
    vault_password_files: list[Path] = field(default_factory=list)
    ask_vault_pass: bool = False
    ask_become_pass: bool = False
    verbosity: int = 0
    _vault_password: str | None = field(default=None, repr=False)
    _become_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for path in self.vault_password_files:
            if not path.is_file() or not os.access(path, os.R_OK):
                raise InputError(f"--vault-password-file {path}: no readable file there")
        env_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
        if env_file and not Path(env_file).expanduser().is_file():
            raise InputError(f"ANSIBLE_VAULT_PASSWORD_FILE={env_file}: no readable file there")
        for value in self.extra_vars:
            if not value.strip():
                raise InputError("-e/--extra-vars needs key=value pairs, YAML/JSON or @FILE, not an empty string")
            if value.startswith("@"):  # a FIFO, a device, a huge file or an alias bomb is refused before reading
                from provision import inventory_guard

                if not Path(value[1:]).expanduser().exists():
                    raise InputError(f"-e/--extra-vars {value}: no such file")
                inventory_guard.check_file(Path(value[1:]).expanduser())

    def prompt(self) -> None:
        """Ask the passwords asked for, once, before any host is contacted (ansible-playbook asks at its start)."""
        if not (self.ask_vault_pass or self.ask_become_pass):
            return
        if not sys.stdin.isatty():
            asked = " and ".join(f for f, on in (("--ask-vault-pass", self.ask_vault_pass),
                                                  ("-K/--ask-become-pass", self.ask_become_pass)) if on)
            raise InputError(f"{asked} need a terminal to ask on; without one use --vault-password-file "
                             "(or ANSIBLE_VAULT_PASSWORD_FILE) and ansible_become_password kept in Vault")
        if self.ask_become_pass and self._become_password is None:
            self._become_password = getpass.getpass("BECOME password: ")
        if self.ask_vault_pass and self._vault_password is None:
            self._vault_password = getpass.getpass("Vault password: ")
            if not self._vault_password:
                raise InputError("the vault password is empty")

    # ---------------------------------------------------------------- for the inventory, in this process

    def apply(self, loader: Any) -> None:
        """Give an ansible-core DataLoader the vault secrets and set the extra vars a VariableManager merges."""
        from ansible import constants as C
        from ansible import context
        from ansible.cli import CLI
        from ansible.errors import AnsibleError
        from ansible.module_utils.common.collections import ImmutableDict
        from ansible.parsing.vault import VaultSecret, VaultSecretsContext
        from ansible.utils import vars as ansible_vars

        try:  # files given and ANSIBLE_VAULT_PASSWORD_FILE (ansible.cfg's vault_password_file), as ansible-playbook
            secrets = CLI.setup_vault_secrets(loader, [], vault_password_files=[str(p) for p in
                                                                               self.vault_password_files],
                                              auto_prompt=False, initialize_context=False)
        except AnsibleError as exc:
            raise InputError(f"cannot read the vault password: {_first_line(exc)}") from None
        if self._vault_password:
            secrets.append((C.DEFAULT_VAULT_IDENTITY, VaultSecret(self._vault_password.encode())))
        loader.set_vault_secrets(secrets)
        current = VaultSecretsContext.current(optional=True)
        if current is None:
            VaultSecretsContext.initialize(VaultSecretsContext(secrets))
        else:  # a second inventory load in this process (`provision demo`): the newest secrets count
            current.secrets = secrets

        for values in [*((value,) for value in self.extra_vars), tuple(self.extra_vars)]:  # each, then all
            context.CLIARGS = ImmutableDict(extra_vars=values)
            if hasattr(ansible_vars.load_extra_vars, "extra_vars"):  # ansible-core caches the first parse
                del ansible_vars.load_extra_vars.extra_vars
            try:
                ansible_vars.load_extra_vars(loader)
            except AnsibleError as exc:
                raise InputError(f"-e/--extra-vars {' '.join(values)}: {_first_line(exc)}") from None

    # ---------------------------------------------------------------- for ansible-playbook, through ansible-runner

    def cmdline(self) -> list[str]:
        args: list[str] = []
        for value in self.extra_vars:
            args += ["-e", _absolute_file_ref(value)]
        for path in self.vault_password_files:
            args += ["--vault-password-file", str(path.resolve())]
        if self._vault_password:
            args.append("--ask-vault-pass")
        if self._become_password is not None:
            args.append("--ask-become-pass")
        if self.verbosity:
            args.append("-" + "v" * min(self.verbosity, 6))
        return args

    def cmdline_text(self) -> str:
        return " ".join(shlex.quote(a) for a in self.cmdline())

    def passwords(self) -> dict[str, str]:
        answers = {}
        if self._vault_password:
            answers[VAULT_PROMPT] = self._vault_password
        if self._become_password is not None:
            answers[BECOME_PROMPT] = self._become_password
        return answers

    def envvars(self) -> dict[str, str]:
        """ansible-playbook runs in the playbooks directory: a relative ANSIBLE_VAULT_PASSWORD_FILE is made absolute."""
        env_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
        return {"ANSIBLE_VAULT_PASSWORD_FILE": str(Path(env_file).expanduser().resolve())} if env_file else {}


def _absolute_file_ref(value: str) -> str:
    """`-e @vars.yml` relative to where the user stands, not to the playbooks directory the run starts in."""
    if value.startswith("@"):
        return "@" + str(Path(value[1:]).expanduser().resolve())
    return value


def _first_line(exc: BaseException) -> str:
    """Ansible's message, and the cause it wraps (e.g. which file could not be read), on one line."""
    parts: list[str] = []
    first = exc
    while exc is not None and len(parts) < 3:
        text = str(getattr(exc, "message", "") or exc).strip()
        if text and text.splitlines()[0] not in parts:
            parts.append(text.splitlines()[0])
        exc = exc.__cause__  # type: ignore[assignment]
    return ": ".join(parts) or type(first).__name__
