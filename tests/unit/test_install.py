"""rocm-provision as a new user meets it: `pip install .` (not editable) into a fresh venv, the `provision` console
script run from another folder. Its first mistakes, Ansible's habits (Vault, -e, -K, -v, --limit, templated
connection values, --json) and the size of the install.

The venv is built once for this module (about 10 s with pip's cache). Runs that need a host use one that refuses
SSH at once (127.0.0.1, port 1): real ansible-playbook through ansible-runner, no lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
MAX_VENV_MB = 250
SECRET = "Mirror-Pass-4471"  # a vaulted provision_repo_password: must never show up in any output
VAULT_PASSWORD = "vault-word-9"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("installed")]  # one venv, built by one worker


@dataclass
class Installed:
    venv: Path
    home: Path  # a folder of its own: no ansible.cfg, no checkout around it

    @property
    def provision(self) -> str:
        return str(self.venv / "bin" / "provision")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PROVISION_", "VIRTUAL_ENV"))}
        env.update(PATH=f"{self.venv / 'bin'}:/usr/bin:/bin", HOME=str(self.home), NO_COLOR="1", COLUMNS="80",
                   PROVISION_RUNS_DIR=str(self.home / "runs"))
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.provision, *args], cwd=self.home, env=env or self.env(), input=stdin,
                              capture_output=True, text=True, timeout=120)

    def encrypt(self, value: str, name: str, password_file: Path) -> str:
        """`ansible-vault encrypt_string`, as a user makes a vaulted inventory value (a YAML `name: !vault |` block)."""
        done = subprocess.run([str(self.venv / "bin" / "ansible-vault"), "encrypt_string", "--vault-password-file",
                               str(password_file), value, "--name", name], cwd=self.home, env=self.env(),
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          str(REPO)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    home = root / "elsewhere"
    home.mkdir()
    yield Installed(venv, home)


@pytest.fixture
def vault_file(installed: Installed) -> Path:
    path = installed.home / "vault-pass.txt"
    path.write_text(VAULT_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def _yaml_host(installed: Installed, vault_file: Path, address: str = "192.0.2.5", port: str | None = None,
               password: str = SECRET) -> Path:
    """A YAML inventory with a vaulted provision_repo_password (and optionally a vaulted ansible_port)."""
    lines = ["all:", "  hosts:", "    ws1:", f"      ansible_host: {address}", "      provision_repo_username: lab",
             "      provision_verify_device: cpu"]
    blocks = [installed.encrypt(password, "provision_repo_password", vault_file)]
    if port is not None:
        blocks.append(installed.encrypt(port, "ansible_port", vault_file))
    for block in blocks:
        lines += ["      " + line for line in block.strip().splitlines()]
    inv = installed.home / "vaulted.yml"
    inv.write_text("\n".join(lines) + "\n")
    return inv


# ---------------------------------------------------------------------------------------------- the install


def test_plain_install_is_lean(installed: Installed) -> None:
    """The venv of `pip install .` stays under 250 MB: ansible-core, not the `ansible` package's collections."""
    size = sum(p.lstat().st_blocks * 512 for p in installed.venv.rglob("*") if not p.is_symlink())
    mb = size / 1e6
    site = next(installed.venv.glob("lib/python3*/site-packages"))
    assert not (site / "ansible_collections").exists(), "the `ansible` package (collections) is installed"
    assert mb <= MAX_VENV_MB, f"the installed venv is {mb:.0f} MB (limit {MAX_VENV_MB} MB)"
    print(f"installed venv: {mb:.0f} MB")  # noqa: T201 - shown with -s, for BENCHMARKS.md


def test_roles_and_playbooks_need_no_collection(installed: Installed) -> None:
    """ansible-core alone (no collection but the rocm.provision one the wheel carries) can parse every playbook
    the CLI runs, roles included: the lean install misses nothing they use."""
    root = next(installed.venv.glob("lib/python3*/site-packages/provision/ansible"))
    playbooks = root / "collections" / "ansible_collections" / "rocm" / "provision" / "playbooks"
    env = installed.env(ANSIBLE_CONFIG=str(root / "ansible.cfg"),
                        ANSIBLE_COLLECTIONS_PATH=str(root / "collections"))
    books = sorted(p.name for p in playbooks.glob("*.yml"))
    assert {"check.yml", "upgrade.yml", "verify.yml"} <= set(books)
    inv = installed.home / "syntax.ini"
    inv.write_text("ws1 ansible_host=192.0.2.5\n")
    done = subprocess.run([str(installed.venv / "bin" / "ansible-playbook"), "--syntax-check", "-i", str(inv),
                           *(str(playbooks / book) for book in books)], cwd=installed.home, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{books}: {done.stdout}{done.stderr}"
    listed = subprocess.run([str(installed.venv / "bin" / "ansible-galaxy"), "collection", "list", "--format",
                             "json"], cwd=installed.home, env=env, capture_output=True, text=True, timeout=120)
    found = {name for paths in json.loads(listed.stdout or "{}").values() for name in paths
             if not name.startswith("ansible._")}  # ansible-core's own internal collection
    assert found <= {"rocm.provision"}, f"collections besides rocm.provision are installed: {sorted(found)}"


# ---------------------------------------------------------------------------------------------- first mistakes


MISTAKES = [
    # (arguments, the command whose usage is shown, what the error line says)
    (["upgrade"], "provision upgrade", "Missing option '--hosts'"),
    (["frobnicate"], "provision", "No such command 'frobnicate'"),
    (["check", "--hosts", "lab.ini", "--forks", "0"], "provision check", "'--forks'"),
    (["check", "--hosts", "lab.ini", "--forks", "many"], "provision check", "'--forks'"),
    (["upgrade", "--hosts", "missing.ini"], "provision upgrade", "'missing.ini' does not exist"),
    (["verify", "--hosts"], "provision verify", "requires an argument"),
    (["upgrade", "--hosts", "lab.ini", "--serial", "half"], "provision upgrade", "'half'"),
    (["upgrade", "--hosts", "lab.ini", "--max-fail-percent", "150"], "provision upgrade", "--max-fail-percent"),
    (["upgrade", "--hosts", "lab.ini", "--colour"], "provision upgrade", "No such option: --colour"),
    (["upgrade", "--hosts", "lab.ini", "--retry-failed", "--limit", "ws1"], "provision upgrade", "--retry-failed"),
    (["upgrade", "--hosts", "lab.ini", "--limit", "nosuchhost", "--check"], "provision upgrade", "nosuchhost"),
    (["hosts", "validate", "--hosts", "lab.ini", "-e", "@missing.yml"], "provision hosts validate", "missing.yml"),
    (["hosts", "validate", "--hosts", "lab.ini", "-e", "[1, 2]"], "provision hosts validate", "dictionary"),
    (["hosts", "validate", "--hosts", "lab.ini", "--vault-password-file", "nope.txt"], "provision hosts validate",
     "nope.txt"),
    (["check", "--hosts", "lab.ini", "--ask-vault-pass"], "provision check", "terminal"),
    (["gpus", "identify", "--lspci", "lspci-missing.txt"], "provision gpus identify", "lspci-missing.txt"),
    (["gpus", "identify", "--lspci", "-", "--mode", "sideways"], "provision gpus identify", "sideways"),
    (["gpus", "frob"], "provision gpus", "No such command 'frob'"),
    (["report", "no-such-run"], "provision report", "no-such-run"),
]


@pytest.mark.parametrize(("args", "command", "says"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_first_mistakes_exit_2_with_usage_and_one_line(installed: Installed, args: list[str], command: str,
                                                      says: str) -> None:
    (installed.home / "lab.ini").write_text("ws1 ansible_host=192.0.2.5\n")
    result = installed.run(*args, stdin="")
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"Usage: {command} "), result.stderr
    assert lines[-1].startswith("error: ") and says in lines[-1], result.stderr
    assert len(lines) == 3, f"one error line under the usage, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""


def test_bare_provision_shows_the_help(installed: Installed) -> None:
    result = installed.run()
    assert result.returncode == 2
    assert "Usage: provision" in result.stdout and "upgrade" in result.stdout and "hosts" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout and "internal error" not in result.stderr


def test_help_and_version_still_exit_0(installed: Installed) -> None:
    assert installed.run("--version").returncode == 0
    for args in (["--help"], ["upgrade", "--help"], ["hosts", "--help"]):
        result = installed.run(*args)
        assert result.returncode == 0 and "Usage" in result.stdout, args


def test_bad_inventory_lists_its_problems_without_usage(installed: Installed) -> None:
    """A wrong inventory is not a command-line mistake: the problems are listed, each with its place."""
    inv = installed.home / "bad.ini"
    inv.write_text("ws1 ansible_host=192.0.2.5 ansible_port=99999 provision_mode=yolo\n")
    result = installed.run("hosts", "validate", "--hosts", str(inv))
    assert result.returncode == 2
    assert "ansible_port" in result.stderr and "provision_mode" in result.stderr and "Usage" not in result.stderr


# ---------------------------------------------------------------------------------------------- Vault


def test_vaulted_password_is_decrypted_validated_and_never_shown(installed: Installed, vault_file: Path) -> None:
    inv = _yaml_host(installed, vault_file)
    refused = installed.run("hosts", "validate", "--hosts", str(inv))
    assert refused.returncode == 2
    assert "provision_repo_password" in refused.stderr and "--vault-password-file" in refused.stderr
    assert "go together" not in refused.stderr  # the password is there, only locked

    for result in (installed.run("hosts", "validate", "--hosts", str(inv), "--vault-password-file", str(vault_file),
                                 "--json"),
                   installed.run("hosts", "validate", "--hosts", str(inv), "--json",
                                 env=installed.env(ANSIBLE_VAULT_PASSWORD_FILE=str(vault_file)))):
        assert result.returncode == 0, result.stderr
        spec = json.loads(result.stdout)["hosts"][0]["spec"]
        assert spec["provision_repo_username"] == "lab" and spec["provision_repo_password"] == "**********"
        assert SECRET not in result.stdout + result.stderr

    wrong = installed.home / "wrong.txt"
    wrong.write_text("not-the-password\n")
    result = installed.run("hosts", "validate", "--hosts", str(inv), "--vault-password-file", str(wrong))
    assert result.returncode == 2 and "could not be decrypted" in result.stderr


def test_vaulted_value_is_validated_after_decryption(installed: Installed, vault_file: Path) -> None:
    bad = "has a space"  # not usable in apt's auth.conf or a netrc
    inv = _yaml_host(installed, vault_file, password=bad)
    result = installed.run("hosts", "validate", "--hosts", str(inv), "--vault-password-file", str(vault_file))
    assert result.returncode == 2
    assert "provision_repo_password" in result.stderr and "not usable as a mirror password" in result.stderr
    assert bad not in result.stderr + result.stdout


def test_ask_vault_pass_on_a_terminal(installed: Installed, vault_file: Path) -> None:
    inv = _yaml_host(installed, vault_file)
    child = pexpect.spawn(installed.provision, ["hosts", "validate", "--hosts", str(inv), "--ask-vault-pass",
                                                "--json"],
                          cwd=str(installed.home), env=installed.env(), encoding="utf-8", timeout=60)
    child.expect("Vault password: ")
    child.sendline(VAULT_PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert '"provision_repo_password": "**********"' in child.before and SECRET not in child.before


def test_vault_encrypted_group_vars_file(installed: Installed, vault_file: Path) -> None:
    """A whole group_vars file under `ansible-vault encrypt`: read with the password, a clear error without."""
    inv_dir = installed.home / "site"
    (inv_dir / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv_dir / "hosts.ini").write_text("[lab]\nws1 ansible_host=192.0.2.5\n")
    secrets = inv_dir / "group_vars" / "lab.yml"
    secrets.write_text(f"provision_repo_username: lab\nprovision_repo_password: {SECRET}\n")
    subprocess.run([str(installed.venv / "bin" / "ansible-vault"), "encrypt", "--vault-password-file",
                    str(vault_file), str(secrets)], env=installed.env(), check=True, capture_output=True, timeout=60)
    assert SECRET not in secrets.read_text()
    ok = installed.run("hosts", "validate", "--hosts", str(inv_dir), "--vault-password-file", str(vault_file),
                       "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["hosts"][0]["spec"]["provision_repo_username"] == "lab"
    locked = installed.run("hosts", "validate", "--hosts", str(inv_dir))
    assert locked.returncode == 2 and "vault" in locked.stderr.lower() and "Traceback" not in locked.stderr


# ---------------------------------------------------------------------------------------------- -e, --limit, templates


def test_extra_vars_take_part_in_validation(installed: Installed) -> None:
    inv = installed.home / "lab.ini"
    inv.write_text("ws1 ansible_host=192.0.2.5 provision_mode=upgrade\n")
    bad = installed.run("hosts", "validate", "--hosts", str(inv), "-e", "provision_mode=sideways")
    assert bad.returncode == 2 and "provision_mode" in bad.stderr and "sideways" in bad.stderr
    varfile = installed.home / "vars.yml"
    varfile.write_text("provision_mode: fallback\nprovision_users: [alice]\n")
    good = installed.run("hosts", "validate", "--hosts", str(inv), "-e", f"@{varfile.name}", "--json")
    assert good.returncode == 0, good.stderr
    spec = json.loads(good.stdout)["hosts"][0]["spec"]
    assert spec["provision_mode"] == "fallback" and spec["provision_users"] == ["alice"]  # -e wins, as in Ansible


def test_limit_needs_only_the_selected_hosts_valid(installed: Installed) -> None:
    inv = installed.home / "site.ini"
    inv.write_text("[gpu]\nws1 ansible_host=192.0.2.5\n[printers]\nprn1 ansible_host=192.0.2.9 ansible_port=99999 "
                   "provision_mode=yolo\n")
    limited = installed.run("hosts", "validate", "--hosts", str(inv), "--limit", "gpu", "--json")
    assert limited.returncode == 0, limited.stderr
    assert [h["name"] for h in json.loads(limited.stdout)["hosts"]] == ["ws1"]
    warnings = [line for line in limited.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("prn1" in w and "skipped" in w for w in warnings), limited.stderr
    whole = installed.run("hosts", "validate", "--hosts", str(inv))
    assert whole.returncode == 2 and "prn1" in whole.stderr


def test_templated_connection_values_are_left_to_run_time(installed: Installed) -> None:
    inv = installed.home / "templated.ini"
    inv.write_text("ws1 ansible_host=\"{{ lookup('env', 'WS1_ADDRESS') }}\" ansible_port=\"{{ ws1_port }}\"\n"
                   "ws2 ansible_host=\"{{ lookup('env', 'WS2_ADDRESS') }}\"\n")
    result = installed.run("hosts", "validate", "--hosts", str(inv), "--json")
    assert result.returncode == 0, result.stderr
    hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    assert set(hosts["ws1"]["templated"]) == {"ansible_host", "ansible_port"}
    assert hosts["ws2"]["templated"] == ["ansible_host"]  # two templates are not "one address twice"


# ---------------------------------------------------------------------------------------------- runs: --json, -v, vault


def test_verify_json_is_the_report_and_vault_reaches_ansible(installed: Installed, vault_file: Path) -> None:
    """`verify --json`: stdout is report.json, the summary goes to stderr. The host's ansible_port is vaulted, so
    ansible-playbook can only try port 1 (and be refused) if the vault password reached it; -v and -e go with it."""
    inv = _yaml_host(installed, vault_file, address="127.0.0.1", port="1")
    result = installed.run("verify", "--hosts", str(inv), "--vault-password-file", str(vault_file), "--json",
                           "-vv", "-e", "demo_marker=1")
    assert result.returncode == 1, result.stderr  # the host is unreachable
    doc = json.loads(result.stdout)
    assert doc["run"]["command"] == "verify"
    host = doc["hosts"][0]
    assert host["name"] == "ws1" and host["state"] == "unreachable"
    assert "port 1" in json.dumps(host), host  # the decrypted ansible_port was used
    assert "| ws1 |" in result.stderr and "report:" in result.stderr
    run_dir = Path(doc["run"]["dir"]) if "dir" in doc["run"] else installed.home / "runs" / doc["run"]["id"]
    command = json.loads(next(run_dir.glob("artifacts/*/command")).read_text())["command"]
    assert "-vv" in command and "demo_marker=1" in command
    assert "--vault-password-file" in command
    assert not any(SECRET in p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())


def test_prompted_passwords_answer_ansible_playbook(installed: Installed, vault_file: Path) -> None:
    """-K and --ask-vault-pass: asked once by provision, answered to ansible-playbook's own prompts (it would wait
    for ever otherwise), kept off disk; the vaulted port decrypts with the prompted password."""
    inv = _yaml_host(installed, vault_file, address="127.0.0.1", port="1")
    child = pexpect.spawn(installed.provision, ["upgrade", "--hosts", str(inv), "--yes", "--json", "-K",
                                                "--ask-vault-pass"],
                          cwd=str(installed.home), env=installed.env(), encoding="utf-8", timeout=120)
    child.expect("BECOME password: ")
    child.sendline("become-word-5")
    child.expect("Vault password: ")
    child.sendline(VAULT_PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1, child.before
    runs = sorted((installed.home / "runs").glob("*-upgrade"))
    doc = json.loads((runs[-1] / "report.json").read_text())
    assert doc["hosts"][0]["state"] == "unreachable" and "port 1" in json.dumps(doc["hosts"][0])
    command = json.loads(next(runs[-1].glob("artifacts/*/command")).read_text())["command"]
    assert "--ask-become-pass" in command and "--ask-vault-pass" in command
    for path in runs[-1].rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "become-word-5" not in text and VAULT_PASSWORD not in text and SECRET not in text, path


# ---------------------------------------------------------------------------------------------- piped tables


def test_piped_tables_are_not_wrapped(installed: Installed) -> None:
    """`provision env list | grep NAME` finds the whole row: name, component and full description on one line."""
    from provision.envcatalog import env_catalog

    listing = installed.run("env", "list")  # stdout is a pipe; COLUMNS=80
    assert listing.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") >= 5}
    for variable in env_catalog().variables.values():
        line = rows.get(variable.name)
        assert line is not None, f"{variable.name} is not whole on one line"
        assert variable.description in line, f"{variable.name}: description wrapped or cut"
    gpus = installed.run("gpus", "list")
    assert any("1002:731f" in line and "gfx1010" in line and "RDNA" in line for line in gpus.stdout.splitlines())
