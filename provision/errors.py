"""Exceptions that carry a message a user can act on, and the exit code the CLI returns for them."""

from __future__ import annotations

from dataclasses import dataclass, field


class ProvisionError(Exception):
    """Base class: anything raised on purpose. The CLI prints `str(err)` and exits with `exit_code`."""

    exit_code = 1


class InputError(ProvisionError):
    """Bad input from the user (arguments, files, inventory): exit code 2, nothing was contacted."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an inventory, located as precisely as the loader allows."""

    message: str
    file: str | None = None
    host: str | None = None
    variable: str | None = None
    value: object = None
    allowed: str | None = None

    def render(self) -> str:
        where = self.file or "inventory"
        parts = [where]
        if self.host:
            parts.append(f"host {self.host}")
        if self.variable:
            parts.append(self.variable)
        head = ": ".join(parts)
        text = f"{head}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        from provision.redact import text as redact
        from provision.safeinput import printable

        return printable(redact(text))


@dataclass
class InventoryError(InputError):
    """The inventory could not be loaded or did not validate. Holds every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"inventory is not valid ({count} problem{'s' if count != 1 else ''}); no host was contacted:"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)
