"""Filter `provision_preflight`: the controller-side half of the preflight. It hands the facts the
`rocm_host_facts` module gathered to the same planner the `provision` CLI uses."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision


def provision_preflight(raw: dict[str, Any], host: str, provision_vars: dict[str, Any],
                        min_free_gib: dict[str, float] | None = None) -> dict[str, Any]:
    require_provision()
    from provision.ansible_values import plain
    from provision.errors import ProvisionError
    from provision.inventory import spec_from_vars
    from provision.preflight import evaluate

    try:
        spec = spec_from_vars(str(host), plain(provision_vars))
        return evaluate(plain(raw), spec, {str(k): float(v) for k, v in (min_free_gib or {}).items()})
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_preflight": provision_preflight}
