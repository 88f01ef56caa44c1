"""Values that come from Ansible (filter arguments) as plain Python, for the planner and the state checks."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """Ansible hands filters lazy, tagged containers and strings; return plain dicts, lists, str, int, float."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value
