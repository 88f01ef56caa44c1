"""Filters `provision_fingerprint` and `provision_converged`: whether a host is converged (provision.converge)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _plain(value: Any) -> Any:
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


def provision_fingerprint(plan: dict[str, Any], provision_vars: dict[str, Any], verify: dict[str, Any]) -> str:
    try:
        from provision.converge import fingerprint
        from provision.errors import ProvisionError
    except ImportError as exc:  # pragma: no cover - depends on how Ansible was installed
        raise AnsibleFilterError(f"the rocm_preflight role needs the rocm-provision package: {exc}") from exc
    try:
        return fingerprint(_plain(plan), _plain(provision_vars), _plain(verify))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def provision_converged(state: dict[str, Any], expected: str, force: Any = False) -> dict[str, Any]:
    from provision.converge import decide

    return decide(_plain(state), str(expected), force=str(force).lower() in ("1", "true", "yes", "on"))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_fingerprint": provision_fingerprint, "provision_converged": provision_converged}
