"""Fleet-wide version pins (data: provision/data/pins.yaml)."""

from __future__ import annotations

from typing import Any

from provision import datafiles


def all_pins() -> dict[str, Any]:
    return datafiles.load("pins")


def version() -> str:
    return str(all_pins()["pins_version"])


def repo() -> dict[str, Any]:
    return all_pins()["repo"]


def torch() -> dict[str, Any]:
    return all_pins()["torch"]


def python() -> dict[str, Any]:
    return all_pins()["python"]


def defaults() -> dict[str, Any]:
    return all_pins()["defaults"]


def supported_os() -> dict[str, dict[str, Any]]:
    return all_pins()["supported_os"]


def codename_for(os_id: str) -> str | None:
    return repo()["codenames"].get(os_id)
