"""Filter `provision_data`: the project's versioned data files (pins, GPU catalog, env-var catalog,
fallback profile) for the roles, read by the same loader the CLI uses: `{{ 'pins' | provision_data }}`."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def provision_data(name: str) -> dict[str, Any]:
    try:
        from provision import datafiles
        from provision.errors import ProvisionError
    except ImportError as exc:  # pragma: no cover - depends on how Ansible was installed
        raise AnsibleFilterError(
            "the rocm-provision roles need the rocm-provision package in the Python that runs Ansible "
            f"(pip install rocm-provision): {exc}"
        ) from exc
    try:
        return datafiles.load(str(name))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_data": provision_data}
