"""The catalog of environment variables that MIOpen, HIP, HSA and PyTorch really read
(data: provision/data/env_vars.yaml), used to validate fallback profiles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from provision import datafiles
from provision.catalog import gfx_from_version


@dataclass(frozen=True)
class EnvVar:
    name: str
    component: str
    type: str  # bool | int | enum | path | string | gfx_version
    values: tuple[str, ...]
    family: str | None
    workaround: bool
    description: str
    notes: str | None
    sources: tuple[str, ...]
    miopen_releases: dict[str, str] | None = None  # MIOpen major.minor -> source key; None: not catalogued


@dataclass(frozen=True)
class NotReal:
    name: str
    reason: str
    instead: str | None


class EnvCatalog:
    def __init__(self, data: dict) -> None:
        tokens = data.get("bool_tokens", {})
        self.true_tokens = tuple(str(t) for t in tokens.get(True, tokens.get("true", ["1"])))
        self.false_tokens = tuple(str(t) for t in tokens.get(False, tokens.get("false", ["0"])))
        self.sources: dict[str, str] = dict(data.get("sources", {}))
        self.miopen_release_of_rocm: dict[str, str] = {str(k): str(v) for k, v in
                                                       (data.get("miopen_release_of_rocm") or {}).items()}
        self.variables: dict[str, EnvVar] = {}
        for row in data.get("variables", []):
            self.variables[row["name"]] = EnvVar(
                name=row["name"],
                component=row.get("component", ""),
                type=row.get("type", "string"),
                values=tuple(str(v) for v in (row.get("values") or [])),
                family=row.get("family"),
                workaround=bool(row.get("workaround", False)),
                description=row.get("description", ""),
                notes=row.get("notes"),
                sources=tuple(row.get("sources", [])),
                miopen_releases=({str(k): str(v) for k, v in row["miopen_releases"].items()}
                                 if row.get("miopen_releases") else None),
            )
        self.not_real: dict[str, NotReal] = {
            row["name"]: NotReal(row["name"], row.get("reason", ""), row.get("instead"))
            for row in data.get("not_read_by_anything", [])
        }

    def get(self, name: str) -> EnvVar | None:
        return self.variables.get(name)

    def miopen_release(self, rocm_version: str | None) -> str | None:
        """'5.2.0' -> '2.17' (the MIOpen release that ROCm release ships), None when not catalogued."""
        if not rocm_version:
            return None
        return self.miopen_release_of_rocm.get(".".join(rocm_version.split(".")[:2]))

    def not_read_by(self, names: list[str], miopen_release: str | None) -> list[str]:
        """Names with a release list that ``miopen_release`` is not on (a profile must not carry them)."""
        if miopen_release is None:
            return []
        return [n for n in names if (var := self.variables.get(n)) is not None and var.miopen_releases is not None
                and miopen_release not in var.miopen_releases]

    def value_problem(self, var: EnvVar, value: str) -> tuple[str, str] | None:
        """(message, allowed) when `value` is not acceptable for `var`, else None."""
        text = value.strip()
        if var.type == "bool":
            allowed = self.true_tokens + self.false_tokens
            if text.lower() not in allowed:
                return ("not a boolean value this library reads", ", ".join(allowed))
        elif var.type == "int":
            if not re.fullmatch(r"-?\d+|0x[0-9a-fA-F]+", text):
                return ("not an integer", "an integer (decimal or 0x hex)")
        elif var.type == "enum":
            if var.values and text.upper() not in {v.upper() for v in var.values}:
                return ("not one of the values this library reads", ", ".join(var.values))
        elif var.type == "path":
            if not text.startswith("/"):
                return ("not an absolute path", "an absolute path")
        elif var.type == "gfx_version":
            try:
                gfx_from_version(text)
            except ValueError:
                return ("not a gfx version", "MAJOR.MINOR.STEPPING such as 10.3.0 or 11.0.0")
        if re.search(r"[\n\r\x00]", value):
            return ("contains a line break or NUL", "a single-line value")
        return None


@cache
def env_catalog() -> EnvCatalog:
    return EnvCatalog(datafiles.load("env_vars"))
