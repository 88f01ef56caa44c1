"""Test-session layout for `pytest -n 2 --dist loadgroup` (what ./scripts/test runs).

Tests that share a lab must run in one worker: every test that uses the session lab fixture (`lab`, hosts on
127.0.0.20..) is in group `lab`, tests/roles share their own lab, the Molecule scenarios one lab dir and mirror.
Other lab modules that bring up a lab of their own are a group each, so the two workers can overlap their
waits on SSH, apt and pip; unit tests spread freely. Without xdist the marks do nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

# ansible-core replaces sys.intern with a callable object when it is imported (its data-tagging patch), and
# torch._dynamo, which torch imports lazily on the first dispatch-mode call, refuses that object
# ("substitute_in_graph expects a function"). A test process imports both (the verification suite's tests
# and the inventory/runner tests), so torch._dynamo comes first; no production process imports both.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

TESTS = Path(__file__).resolve().parent
SHARED = {"roles", "molecule"}  # folders whose tests share one lab


# Marks are added as each item is collected, before any pytest_collection_modifyitems hook: xdist's own one
# turns them into nodeid suffixes (`@group`) and must see them.
def pytest_itemcollected(item: pytest.Item) -> None:
    try:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
    except ValueError:
        return
    if not parts:
        return
    if parts[0] in SHARED:
        group = parts[0]
    elif "lab" in getattr(item, "fixturenames", ()):
        group = "lab"
    elif parts[0] == "lab":
        group = f"lab:{Path(parts[-1]).stem}"
    else:
        return
    item.add_marker(pytest.mark.xdist_group(group))
