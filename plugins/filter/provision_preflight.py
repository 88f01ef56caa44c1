"""Filter `provision_preflight`: the controller-side half of the preflight. It hands the facts the
`rocm_host_facts` module gathered to the same planner the `provision` CLI uses."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _plain(value: Any) -> Any:
    """Ansible hands filters lazy, tagged containers; the planner wants plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def provision_preflight(raw: dict[str, Any], host: str, provision_vars: dict[str, Any],
                        min_free_gib: dict[str, float] | None = None) -> dict[str, Any]:
    try:
        from provision.errors import ProvisionError
        from provision.inventory import spec_from_vars
        from provision.preflight import evaluate
    except ImportError as exc:  # pragma: no cover - depends on how Ansible was installed
        raise AnsibleFilterError(
            "the rocm_preflight role needs the rocm-provision package in the Python that runs Ansible "
            f"(pip install rocm-provision): {exc}"
        ) from exc
    try:
        spec = spec_from_vars(str(host), _plain(provision_vars))
        return evaluate(_plain(raw), spec, {str(k): float(v) for k, v in (min_free_gib or {}).items()})
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_preflight": provision_preflight}
