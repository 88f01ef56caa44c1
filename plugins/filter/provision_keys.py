"""Filter for the repository key, evaluated on the controller
(`{{ colons | rocm.provision.provision_key_unexpired(fingerprint, url) }}`):

- `provision_key_unexpired`: the key with the pinned fingerprint in `gpg --with-colons` output must not be
  expired (AMD's key has expired several times with the same fingerprint, and once the served file itself was
  the expired copy: provision/data/pins.yaml, source KEY_EXPIRY). Returns its expiry date ("" when it has none);
  fails the task with the date when it has passed.
"""

from __future__ import annotations

import time
from typing import Any

from ansible.errors import AnsibleFilterError


def provision_key_unexpired(colons: Any, fingerprint: Any, url: Any, now: float | None = None) -> str:
    try:
        from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision
    except ImportError:  # loaded by path (the unit tests): the package is importable already
        pass
    else:
        require_provision()
    from provision.hostrules import key_expiry

    expired, date = key_expiry(str(colons), str(fingerprint), time.time() if now is None else now)
    if expired:
        raise AnsibleFilterError(
            f"The key at {url} (fingerprint {fingerprint}) expired on {date or 'an unknown date'}: apt would "
            "refuse the repositories it signs (EXPKEYSIG). Nothing was changed. AMD re-issues the key with the "
            "same fingerprint and new dates: fetch the current key (or fix the mirror's copy) and run again.")
    return date or ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_key_unexpired": provision_key_unexpired}
