"""Filters `provision_fingerprint` and `provision_converged`: whether a host is converged (provision.converge)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision


def provision_fingerprint(plan: dict[str, Any], provision_vars: dict[str, Any], verify: dict[str, Any]) -> str:
    require_provision()
    from provision.ansible_values import plain
    from provision.converge import fingerprint
    from provision.errors import ProvisionError

    try:
        return fingerprint(plain(plan), plain(provision_vars), plain(verify))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def provision_converged(state: dict[str, Any], expected: str, force: Any = False) -> dict[str, Any]:
    require_provision()
    from provision.ansible_values import plain
    from provision.converge import decide

    return decide(plain(state), str(expected), force=str(force).lower() in ("1", "true", "yes", "on"))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_fingerprint": provision_fingerprint, "provision_converged": provision_converged}
