"""Filter `conv_verify_suite_files`: the files of the convolution verification suite on the controller
(provision/__init__.py and provision/convcheck/, without bytecode), as {src, dest} with dest relative to
the shipped tree, so the suite is copied from whichever rocm-provision the controller runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision


def conv_verify_suite_files(_unused: Any = None) -> list[dict[str, str]]:
    provision = require_provision()
    package = Path(provision.__file__).resolve().parent
    suite = package / "convcheck"
    if not (suite / "__main__.py").is_file():
        raise AnsibleFilterError(f"the verification suite is missing from {suite}")
    files = [package / "__init__.py", *sorted(
        path for path in suite.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )]
    return [{"src": str(path), "dest": str(path.relative_to(package.parent))} for path in files]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"conv_verify_suite_files": conv_verify_suite_files}
