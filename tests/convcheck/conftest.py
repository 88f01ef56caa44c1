"""Shared helpers for the convcheck tests (CPU only; workers are real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "provision" / "convcheck" / "schema.json"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m provision.convcheck ARGS`` in a fresh interpreter, as a host would run it."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "provision.convcheck", *args], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=timeout, check=False)


def validate(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """A small JSON-Schema subset validator: type, enum, required, properties, additionalProperties, items,
    minimum."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        pytypes = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
                   "boolean": bool, "null": type(None)}
        ok = any(isinstance(instance, pytypes[t]) and not (t in ("integer", "number") and isinstance(instance, bool))
                 for t in allowed)
        if not ok:
            return [f"{path}: {instance!r} is not of type {allowed}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(instance, int | float) and instance < schema["minimum"]:
        errors.append(f"{path}: {instance} < {schema['minimum']}")
    if isinstance(instance, dict):
        errors += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in instance]
        for key, sub in schema.get("properties", {}).items():
            if key in instance:
                errors += validate(instance[key], sub, f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in instance.keys() - schema.get("properties", {}).keys():
                errors += validate(instance[key], extra, f"{path}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())
