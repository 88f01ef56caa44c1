"""The repository as the Ansible collection rocm.provision, checked with Ansible's own tools.

- `ansible-doc` renders every module from the checkout (through ansible.cfg's collections path, as a user of
  the checkout finds them), with its examples and return values; each module's documented options are the
  options its AnsibleModule accepts (names, types, defaults, required, choices), so the docs cannot drift.
- `ansible-galaxy collection build` + `ansible-galaxy collection install` into a temporary path give a collection
  of exactly the collection content (build_ignore leaves the package, tests and lab out), and a playbook outside
  the checkout, on localhost, runs its FQCN module (with shared module_utils), filter and playbooks from there.
- Without the controller-side requirement (the rocm-provision package, of the collection's version) the play
  fails with one line saying what to install, not a traceback.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import provision

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
COLLECTION_CONTENT = {"CHANGELOG.md", "COLLECTION.md", "FILES.json", "MANIFEST.json", "meta", "playbooks", "plugins",
                      "roles"}


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]), ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", **extra)


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _doc_blocks(module: str) -> dict[str, Any]:
    tree = ast.parse((REPO / "plugins" / "modules" / f"{module}.py").read_text())
    blocks: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                blocks[name] = yaml.safe_load(ast.literal_eval(node.value))
    return blocks


def _argument_spec(module: str) -> dict[str, dict[str, Any]]:
    """The argument_spec literal the module passes to AnsibleModule."""
    tree = ast.parse((REPO / "plugins" / "modules" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "AnsibleModule":
            for keyword in node.keywords:
                if keyword.arg == "argument_spec":
                    return dict(ast.literal_eval(keyword.value))
    raise AssertionError(f"{module}: no AnsibleModule(argument_spec=...) literal")


def test_the_collection_and_the_package_have_one_version() -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("rocm", "provision")
    assert galaxy["version"] == provision.__version__, "bump galaxy.yml with provision/__init__.py"


@pytest.mark.parametrize("module", MODULES)
def test_module_docs_are_valid_and_match_what_the_module_accepts(module: str) -> None:
    blocks = _doc_blocks(module)
    assert set(blocks) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, f"{module} lacks {blocks.keys()}"
    doc = blocks["DOCUMENTATION"]
    assert doc["module"] == module and doc["short_description"] and doc["description"] and doc["author"]
    spec = _argument_spec(module)
    options = doc.get("options") or {}
    assert set(options) == set(spec), f"{module}: documented {sorted(options)} != accepted {sorted(spec)}"
    for name, accepted in spec.items():
        documented = options[name]
        assert documented.get("type", "str") == accepted.get("type", "str"), f"{module}.{name} type"
        assert documented.get("default") == accepted.get("default"), f"{module}.{name} default"
        assert bool(documented.get("required")) == bool(accepted.get("required")), f"{module}.{name} required"
        assert documented.get("choices") == accepted.get("choices"), f"{module}.{name} choices"
        assert documented.get("elements") == accepted.get("elements"), f"{module}.{name} elements"
    tasks = blocks["EXAMPLES"]
    assert isinstance(tasks, list) and tasks, f"{module}: EXAMPLES is not a list of tasks"
    assert any(f"rocm.provision.{module}" in task for task in tasks), f"{module}: no example uses its FQCN"
    assert not any(module in task for task in tasks), f"{module}: an example uses the short name"
    assert all(isinstance(v, dict) and v.get("description") and v.get("type") and v.get("returned")
               for v in blocks["RETURN"].values()), f"{module}: RETURN entries need description, type, returned"


def test_ansible_doc_renders_every_module_from_the_checkout(tmp_path: Path) -> None:
    done = _run([str(BIN / "ansible-doc"), *(f"rocm.provision.{m}" for m in MODULES)], REPO,
                _env(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "[WARNING]" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    for module in MODULES:
        header = re.search(rf"^> MODULE rocm\.provision\.{module} \((\S+)\)$", done.stdout, re.M)
        assert header, f"ansible-doc did not render {module}"
        assert header.group(1).startswith(str(REPO / "collections")), header.group(1)
    assert done.stdout.count("EXAMPLES:") == len(MODULES) and done.stdout.count("RETURN VALUES:") == len(MODULES)


class _Artifact(BaseHTTPRequestHandler):
    body = b"rocm-core stand-in\n" * 1000

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def artifact_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Artifact)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/rocm-core_5.2.0.50200-65_amd64.deb"
    httpd.shutdown()


PLAYBOOK = """\
- name: Use the installed rocm.provision collection by FQCN
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Read the pins through the collection's filter (the rocm-provision planner's data files)
      ansible.builtin.set_fact:
        pins_index_url: "{{ ('pins' | rocm.provision.provision_data).torch.index_url }}"

    - name: Fetch an artifact with the collection's module (its shared module_utils imported the Ansible way)
      rocm.provision.rocm_artifact_fetch:
        artifacts: [{url: "{{ url }}", checksum: "SHA256:{{ sha256 }}"}]
        cache_dir: "{{ cache }}"
        progress_file: "{{ cache }}/progress.jsonl"
      register: fetched

    - name: Report
      ansible.builtin.copy:
        content: "{{ {'index_url': pins_index_url, 'paths': fetched.paths, 'changed': fetched.changed} | to_json }}"
        dest: "{{ cache }}/result.json"
        mode: "0644"
"""


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ansible-galaxy collection build` of the checkout, once for this module; checks what went in."""
    dist = tmp_path_factory.mktemp("dist")
    built = _run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO)],
                 dist, _env())
    assert built.returncode == 0, built.stdout + built.stderr
    path = dist / f"rocm-provision-{provision.__version__}.tar.gz"
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert {n.split("/")[0] for n in names} == COLLECTION_CONTENT, sorted({n.split("/")[0] for n in names})
    assert not [n for n in names if "/molecule" in n or "__pycache__" in n or n.endswith(".pyc")]
    return path


def _installed(tmp_path: Path, tarball: Path) -> tuple[Path, dict[str, str]]:
    """Install the built collection into tmp_path/collections; returns (its root, env for Ansible using it)."""
    collections = tmp_path / "collections"
    # only this path counts (a rocm.provision in ~/.ansible/collections must not make the install a no-op)
    installed = _run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections),
                      str(tarball)], tmp_path, _env(ANSIBLE_COLLECTIONS_PATH=str(collections)))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")  # nothing of the checkout's settings
    env = _env(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return collections / "ansible_collections" / "rocm" / "provision", env


def _playbook(tmp_path: Path, env: dict[str, str], url: str, python: list[str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "use.yml").write_text(PLAYBOOK)
    extravars = json.dumps({"url": url, "sha256": hashlib.sha256(_Artifact.body).hexdigest(),
                            "cache": str(tmp_path / "cache"), "ansible_python_interpreter": sys.executable})
    argv = [*(python or [str(BIN / "ansible-playbook")]), "-i", "localhost,", "use.yml", "-e", extravars]
    return _run(argv, tmp_path, env)


@pytest.mark.slow
def test_built_collection_installs_and_its_fqcn_module_filter_and_playbooks_run(tmp_path: Path, tarball: Path,
                                                                               artifact_url: str) -> None:
    root, env = _installed(tmp_path, tarball)
    assert json.loads((root / "MANIFEST.json").read_text())["collection_info"]["version"] == provision.__version__

    docs = _run([str(BIN / "ansible-doc"), *(f"rocm.provision.{m}" for m in MODULES)], tmp_path, env)
    assert docs.returncode == 0, docs.stderr
    assert docs.stdout.count(f"({root}/plugins/modules/") == len(MODULES), docs.stdout[:2000]

    done = _playbook(tmp_path, env, artifact_url)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "cache" / "result.json").read_text())
    pins = yaml.safe_load((REPO / "provision" / "data" / "pins.yaml").read_text())
    assert result["index_url"] == pins["torch"]["index_url"]
    digest = hashlib.sha256(_Artifact.body).hexdigest()
    assert result["changed"] and Path(result["paths"][f"SHA256:{digest}"]).read_bytes() == _Artifact.body
    progress = [json.loads(line) for line in (tmp_path / "cache" / "progress.jsonl").read_text().splitlines()]
    assert progress[-1]["done"] == len(_Artifact.body) and progress[-1]["file"].endswith(".deb")

    # the collection's own playbooks resolve their FQCN roles, modules and filters from the installed copy
    playbooks = sorted(p.stem for p in (root / "playbooks").glob("*.yml"))
    assert {"check", "upgrade", "fallback", "remove", "verify", "unlock"} <= set(playbooks)
    syntax = _run([str(BIN / "ansible-playbook"), "-i", "localhost,", "--syntax-check",
                   *(f"rocm.provision.{p}" for p in playbooks)], tmp_path, env)
    assert syntax.returncode == 0, syntax.stdout[-2000:] + syntax.stderr[-2000:]
    assert syntax.stdout.count("playbook: ") == len(playbooks), syntax.stdout


@pytest.mark.slow
def test_without_the_controller_package_the_play_fails_with_one_clear_line(tmp_path: Path, tarball: Path,
                                                                          artifact_url: str) -> None:
    root, env = _installed(tmp_path, tarball)
    # simulated missing package: `import provision` fails in ansible-playbook as it does where it is not installed
    hide = ("import sys; sys.modules['provision'] = None; from ansible.cli.playbook import main; "
            "sys.argv[0] = 'ansible-playbook'; main()")
    done = _playbook(tmp_path, env, artifact_url, python=[sys.executable, "-c", hide])
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"the rocm.provision collection {provision.__version__} needs the rocm-provision Python package" in output
    assert f"pip install 'rocm-provision=={provision.__version__}'" in output and sys.executable in output
    assert "Traceback" not in output and "ModuleNotFoundError" not in output.replace("(import of provision", "")

    # another version of the package than the collection's: refused, both versions named
    manifest = root / "MANIFEST.json"
    doc = json.loads(manifest.read_text())
    doc["collection_info"]["version"] = "0.0.1"
    manifest.write_text(json.dumps(doc))
    other = _playbook(tmp_path, env, artifact_url)
    assert other.returncode != 0
    assert (f"the rocm.provision collection 0.0.1 needs rocm-provision 0.0.1 on the controller, but "
            f"{Path(provision.__file__).resolve().parent} is rocm-provision {provision.__version__}") in other.stdout


WHEEL_RUN = """\
import json, sys
from pathlib import Path
import provision
from provision.runner import PlaybookRun, collection_root
inventory, site = Path(sys.argv[1]), sys.argv[2]
run = PlaybookRun("check.yml", inventory, hosts=["localhost"],
                  extravars={"ansible_become": False, "ansible_python_interpreter": sys.executable})
done = run.run()
print(json.dumps({"package": provision.__file__, "collection": str(collection_root()), "rc": done.rc,
                  "status": done.hosts["localhost"].status, "message": done.hosts["localhost"].message,
                  "phases": [p["name"] for p in done.hosts["localhost"].phases],
                  "preflight": sorted(done.stats.get("provision_preflight", {}))}))
"""


@pytest.mark.slow
def test_the_wheel_runs_its_fqcn_playbooks_with_the_collection_it_carries(tmp_path: Path) -> None:
    """`pip install` of the wheel (unpacked here, ahead of the checkout on sys.path) runs playbooks/check.yml
    through ansible-runner as `provision check` does, its roles, modules and filters from the wheel's collection.
    The host is this machine over a local connection: the preflight only reads."""
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
                 tmp_path, _env(), timeout=600)
    assert built.returncode == 0, built.stderr
    site = tmp_path / "site"
    import zipfile

    with zipfile.ZipFile(next((tmp_path / "dist").glob("rocm_provision-*.whl"))) as wheel:
        wheel.extractall(site)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("localhost ansible_connection=local\n")
    done = _run([sys.executable, "-c", WHEEL_RUN, str(inventory), str(site)], tmp_path,
                _env(PYTHONPATH=str(site), PROVISION_RUNS_DIR=str(tmp_path / "runs"),
                     ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp")), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(site)) and result["collection"].startswith(str(site)), result
    assert result["rc"] == 0 and result["status"] == "ok", result
    assert result["phases"] == ["preflight"] and result["preflight"] == ["localhost"], result
    events = (tmp_path / "runs").rglob("job_events/*.json")
    paths = {json.loads(e.read_text())["event_data"].get("task_path", "").split(":")[0] for e in events} - {""}
    roles = {p for p in paths if "/roles/" in p}
    assert roles and all(p.startswith(f"{site}/provision/ansible/collections/ansible_collections/rocm/provision/")
                         for p in roles), sorted(roles)


def test_the_readmes_example_playbooks_are_valid_playbooks_of_the_collection(tmp_path: Path) -> None:
    """Every role README and COLLECTION.md has an example playbook; each one passes ansible-playbook's syntax check
    with the checkout's ansible.cfg (FQCN roles resolved through the collection)."""
    readmes = [*sorted((REPO / "roles").glob("*/README.md")), REPO / "COLLECTION.md"]
    assert {p.parent.name for p in readmes[:-1]} == {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}
    plays: list[Any] = []
    for readme in readmes:
        text = readme.read_text()
        assert "## Requirements" in text, f"{readme.relative_to(REPO)} has no Requirements section"
        blocks = re.findall(r"^## Example[^\n]*\n\n```yaml\n(.*?)^```", text, re.S | re.M)
        assert blocks, f"{readme.relative_to(REPO)} has no example playbook"
        for block in blocks:
            doc = yaml.safe_load(block)
            assert isinstance(doc, list) and all("hosts" in play for play in doc), readme
            assert "rocm.provision." in block, f"{readme.relative_to(REPO)}: the example does not use the FQCN"
            plays += doc
    (tmp_path / "examples.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    done = _run([str(BIN / "ansible-playbook"), "-i", "localhost,", "--syntax-check", str(tmp_path / "examples.yml")],
                REPO, _env(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_ansible_doc_renders_every_filter(tmp_path: Path) -> None:
    from tests.sources import load_source

    names = sorted(name for path in (REPO / "plugins" / "filter").glob("*.py")
                   for name in load_source(str(path.relative_to(REPO))).FilterModule().filters())
    assert len(names) >= 7
    assert not [n for n in names if not (REPO / "plugins" / "filter" / f"{n}.yml").is_file()], "a filter lacks docs"
    done = _run([str(BIN / "ansible-doc"), "-t", "filter", *(f"rocm.provision.{n}" for n in names)], REPO,
                _env(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path)))
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    for name in names:
        assert re.search(rf"^> FILTER rocm\.provision\.{name} \(", done.stdout, re.M), f"no docs for {name}"
    assert done.stdout.count("EXAMPLES:") == len(names)


def test_roles_playbooks_and_scenarios_name_the_collections_content_by_fqcn() -> None:
    """A role, module or filter of the collection named without `rocm.provision.` would only resolve where the
    old role-relative paths were configured; the checkout and the wheel no longer configure them."""
    from tests.sources import load_source

    filters = {name for path in (REPO / "plugins" / "filter").glob("*.py")
               for name in load_source(str(path.relative_to(REPO))).FilterModule().filters()}
    roles = {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}
    alternatives = "|".join(sorted(filters))
    patterns = [
        re.compile(rf"\|\s*(?:{alternatives})\b"),  # a filter
        re.compile(rf"^\s*-?\s*(?:{'|'.join(MODULES)}):", re.M),  # a module as a task's action
        re.compile(rf"^\s*-?\s*(?:role|name):\s*['\"]?(?:{'|'.join(sorted(roles))})['\"]?\s*$", re.M),  # a role
    ]
    files = [p for folder in ("roles", "playbooks", "molecule", "tests/roles/playbooks", "provision/lab/playbooks")
             for p in (REPO / folder).rglob("*") if p.suffix in (".yml", ".yaml", ".j2")]
    assert len(files) > 50
    offenders = [f"{p.relative_to(REPO)}: {m.group(0).strip()}" for p in files for pattern in patterns
                 for m in pattern.finditer(p.read_text())]
    assert not offenders, offenders
