"""Lab exceptions: each carries a message the user can act on (never a traceback in the CLI)."""

from __future__ import annotations

from provision.errors import InputError, ProvisionError


class LabError(ProvisionError):
    """The lab could not be brought to the asked state because of the environment (exit code 1)."""


class LabUsageError(InputError):
    """Bad arguments to a lab command (exit code 2)."""
