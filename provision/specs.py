"""Typed host specs: the `provision_*` inventory variables, validated before any host is touched.

Every field is a user-facing inventory variable named `provision_<field>`; `ALLOWED` holds the text
shown to a user whose value was refused. Values may arrive from INI (strings, Python literals) or
YAML (typed), so booleans and lists accept the same spellings Ansible's own argument specs do.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from provision import pins

PREFIX = "provision_"

# Anchored with \Z, not $: `$` also matches before a trailing newline, which would let "/opt/venv\n" through.
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*\Z")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
_PYTHON_CMD_RE = re.compile(r"^python3(\.\d{1,2})?\Z")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~%/+-]*)?\Z")
_FILE_URL_RE = re.compile(r"^file:///[A-Za-z0-9._~%/+-]*\Z")  # a local wheel directory (pip --find-links)
_PKG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_PKG_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*\Z")
_PKG_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._%+-]*\.whl\Z")
_REPO_USER_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,128}\Z")
_REPO_PASSWORD_RE = re.compile(r"^[\x21-\x7e]{1,256}\Z")  # printable ASCII, no spaces (netrc/auth.conf syntax)
# Fields whose values are never shown: not in error messages, not in `hosts validate`, not in reports.
SECRET_FIELDS = frozenset({"repo_password"})

# Directories a venv must never be, or live under: package managers own them, or removing ROCm
# would take the venv with it.
_FORBIDDEN_EXACT = {"/", "/usr", "/usr/local", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt", "/home",
                    "/root", "/var", "/tmp", "/srv", "/mnt", "/media"}
# Matched per path component ("/boot" refuses /boot and /boot/x, not /bootstrap-venvs); /opt/rocm also as the
# start of a name (/opt/rocm-7.0.0). /var/lib and /var/log belong to services and logrotate; /usr/local/bin,
# /usr/local/sbin and /usr/include hold executables and headers other packages install.
_FORBIDDEN_PREFIXES = ("/opt/rocm", "/proc", "/sys", "/dev", "/etc", "/boot", "/usr/bin", "/usr/lib",
                       "/usr/share", "/usr/sbin", "/usr/include", "/usr/local/bin", "/usr/local/sbin", "/var/lib",
                       "/var/log", "/run", "/var/run")
PATH_MAX = 4096  # Linux PATH_MAX: no longer path can be opened

TRUE_WORDS = {"true", "yes", "on", "1", "y", "t"}
FALSE_WORDS = {"false", "no", "off", "0", "n", "f"}

ALLOWED: dict[str, str] = {
    "mode": "auto, upgrade or fallback",
    "venv": "an absolute path (at most 4096 characters) made of letters, digits and . _ / + @ -, outside system"
            " directories (/usr, /etc, /boot, /var/lib, /var/log, /usr/local/bin, /usr/include, ...) and /opt/rocm*",
    "python": "an absolute path to an interpreter, or python3 / python3.12, or leave unset to let the role choose",
    "users": "a list of Linux user names (lower case letters, digits, _ and -)",
    "allow_reboot": "true or false (also yes/no, on/off, 1/0)",
    "reboot_timeout": "seconds, an integer from 60 to 7200",
    "fallback_env": "a mapping of environment variable names from the env-var catalog to single-line values",
    "allow_unknown_env": "true or false",
    "allow_unsupported_os": "true or false",
    "expected_gpus": "a list of PCI ids such as 1002:731f",
    "repo_base_url": "an https URL without credentials, e.g. https://repo.radeon.com (http only with"
                     " provision_allow_insecure_http: true)",
    "key_url": "an https URL without credentials (http only with provision_allow_insecure_http: true)",
    "key_fingerprint": "a 40-hex-digit OpenPGP fingerprint",
    "wheel_index_url": "an https URL of a wheel directory listing (AMD's layout, e.g."
                       " https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0/), or file:///path of a wheel directory"
                       " (http only with provision_allow_insecure_http: true)",
    "pypi_index_url": "an https URL of a PEP 503 simple index for the wheels' dependencies"
                      " (default https://pypi.org/simple/; http only with provision_allow_insecure_http: true)",
    "allow_insecure_http": "true or false: accept http:// repository, key and wheel index URLs (credentials still"
                           " never go over http:// except to this machine's loopback)",
    "python_source": "auto (by OS: Ubuntu 24.04 system, Ubuntu 22.04 deadsnakes, Debian 12 none), system,"
                     " deadsnakes (Ubuntu only) or standalone (the pinned python-build-standalone CPython)",
    "python_standalone_url": "an http(s) URL of the python-build-standalone release directory or its mirror"
                             " (default https://github.com/astral-sh/python-build-standalone/releases/download)",
    "torch_python": "the Python X.Y the wheel set is for, e.g. 3.12 (default: the pins' 3.12)",
    "torch_packages": "a non-empty list of {name, version} mappings (optional sha256, file) that includes torch",
    "sysfs_root": "an absolute path (real hosts: /sys)",
    "verify_profile": "quick or full",
    "verify_venv": "an absolute path of a venv with torch (default: provision_venv)",
    "verify_search_time_limit": "seconds, an integer from 60 to 14400: the fallback workaround search's budget",
    "repo_username": "a mirror user name: letters, digits and . _ @ + - (with provision_repo_password)",
    "repo_password": "a mirror password: 1 to 256 printable ASCII characters, no spaces (with provision_repo_username;"
                     " keep it in Ansible Vault); only with an https:// mirror",
    "install_driver": "true (install the amdgpu-dkms driver) or false (keep the in-box amdgpu driver)",
    "verify_device": "auto (the GPU, or fail when there is none), cuda (a GPU through torch.cuda, ROCm or CUDA) or cpu",
    "lock_max_age": "seconds, an integer from 3600 (1 hour) to 2592000 (30 days): a host lock older than this is"
                    " taken over (a younger run may still be working on the host; true/false are not numbers)",
    "artifact_cache": "true (the controller downloads packages and wheels once for the fleet) or false (each host"
                      " downloads from the repository itself)",
    "cache_dir": "an absolute path on the controller for the artifact cache"
                 " (default ~/.cache/rocm-provision/artifacts)",
}


def _bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("not a boolean")


def _seconds(value: Any) -> Any:
    """An integer number of seconds; a boolean (YAML `true`, INI `yes`) is refused, not read as 1 or 0."""
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS
                                   and not value.strip().isdigit()):
        raise ValueError("is a boolean, not a number of seconds")
    return value


def _list(value: Any) -> Any:
    """INI users write `a,b`; YAML users write a list. Accept both, like Ansible's `type: list`."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ValueError("not a list")


def _path(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a path")
    if len(value) > PATH_MAX:
        raise ValueError(f"is {len(value)} characters long; Linux paths are at most {PATH_MAX}")
    if not value.startswith("/"):
        raise ValueError("is a relative path; it must be absolute")
    if not _SAFE_PATH_RE.match(value) or "/../" in value + "/":
        raise ValueError(
            "contains characters that are not allowed in a path here (spaces, quotes, shell metacharacters or ..)"
        )
    if "//" in value or "/./" in value + "/" or "/-" in value:
        raise ValueError("is not a normalised path (no //, /./ or a component starting with -)")
    return value.rstrip("/") or "/"


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a URL")
    if "@" in value.split("//", 1)[-1].split("/", 1)[0]:
        raise ValueError("contains credentials; URLs end up in logs, so credentials are not allowed in them")
    if not _URL_RE.match(value):
        raise ValueError("is not a plain http(s) URL (no spaces, quotes or shell metacharacters)")
    return value


def _index_url(value: Any) -> str:
    if isinstance(value, str) and value.startswith("file:"):
        if not _FILE_URL_RE.match(value) or "/../" in value + "/":
            raise ValueError("is not a plain file:///path URL (no spaces, quotes, .. or shell metacharacters)")
        return value
    return _url(value)


def _loopback(url: str) -> bool:
    """True when the URL's host is this machine's loopback: what is sent there never leaves the machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _strict_int(value: Any) -> Any:
    """Integers as YAML or INI give them: not a boolean (`true` is not 1 second), ASCII digits only (int() would
    read '٣٦٠٠' or '²²'... as numbers; nothing downstream does)."""
    if isinstance(value, bool):
        raise ValueError("is a boolean, not a number")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.lstrip("-").isdigit()):
            raise ValueError("is not a whole number written with the digits 0-9")
        return int(text)
    return value


StrictishBool = Annotated[bool, BeforeValidator(_bool)]
StrictInt = Annotated[int, BeforeValidator(_strict_int)]
AbsPath = Annotated[str, BeforeValidator(_path)]
Url = Annotated[str, BeforeValidator(_url)]
IndexUrl = Annotated[str, BeforeValidator(_index_url)]


class TorchPackage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    sha256: str | None = None
    file: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _PKG_NAME_RE.match(v):
            raise ValueError("not a Python package name")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _PKG_VERSION_RE.match(str(v)):
            raise ValueError("not a version")
        return str(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("not a sha256 (64 hex digits)")
        return v.lower() if v else v

    @field_validator("file")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        if v is not None and not _PKG_FILE_RE.match(v):
            raise ValueError("not a wheel file name")
        return v


def _default_packages() -> list[TorchPackage]:
    return [TorchPackage(**row) for row in pins.torch()["packages"]]


class HostSpec(BaseModel):
    """The product's settings for one host, after group and host variables are merged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "upgrade", "fallback"] = "auto"
    venv: AbsPath = Field(default_factory=lambda: pins.defaults()["venv"])
    python: str | None = None
    users: Annotated[list[str], BeforeValidator(_list)] = Field(default_factory=list)
    allow_reboot: StrictishBool = True
    reboot_timeout: StrictInt = Field(default_factory=lambda: int(pins.defaults()["reboot_timeout"]), ge=60, le=7200)
    fallback_env: dict[str, str] = Field(default_factory=dict)
    allow_unknown_env: StrictishBool = False
    allow_unsupported_os: StrictishBool = False
    expected_gpus: Annotated[list[str], BeforeValidator(_list)] = Field(default_factory=list)
    # before the URLs: their validators read it
    allow_insecure_http: StrictishBool = False
    repo_base_url: Url = Field(default_factory=lambda: pins.repo()["base_url"])
    key_url: Url = Field(default_factory=lambda: pins.repo()["key_url"])
    key_fingerprint: str = Field(default_factory=lambda: pins.repo()["key_fingerprint"])
    wheel_index_url: IndexUrl = Field(default_factory=lambda: pins.torch()["index_url"])
    pypi_index_url: Url = Field(default_factory=lambda: pins.torch()["pypi_index_url"])
    python_source: Literal["auto", "system", "deadsnakes", "standalone"] = "auto"
    python_standalone_url: Url | None = None
    torch_python: Annotated[str, Field(pattern=r"^3\.\d{1,2}$")] | None = None
    torch_packages: list[TorchPackage] = Field(default_factory=_default_packages)
    sysfs_root: AbsPath = "/sys"
    verify_profile: Literal["quick", "full"] = "quick"
    verify_venv: AbsPath | None = None
    verify_device: Literal["auto", "cuda", "cpu"] = "auto"
    verify_search_time_limit: int = Field(default=900, ge=60, le=14400)
    install_driver: StrictishBool = True
    lock_max_age: Annotated[int, BeforeValidator(_strict_int), BeforeValidator(_seconds)] = Field(
        default=86400, ge=3600, le=2592000)
    artifact_cache: StrictishBool = True
    cache_dir: AbsPath | None = None
    repo_username: str | None = None
    repo_password: SecretStr | None = None

    @field_validator("mode", "verify_profile", "verify_device", "python_source", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("venv")
    @classmethod
    def _venv(cls, v: str) -> str:
        owner = next((p for p in _FORBIDDEN_PREFIXES if v == p or v.startswith(p + "/")), None)
        if v.startswith("/opt/rocm-"):
            owner = "/opt/rocm-*"
        if v in _FORBIDDEN_EXACT or owner:
            where = f" (under {owner})" if owner else ""
            raise ValueError(f"is a system or ROCm-owned directory{where}; a venv there could be deleted or break "
                             "the OS")
        return v

    @field_validator("torch_packages")
    @classmethod
    def _torch_packages(cls, v: list[TorchPackage]) -> list[TorchPackage]:
        if not v:
            raise ValueError("is empty; the venv needs at least torch")
        if not any(p.name.lower() == "torch" for p in v):
            raise ValueError("has no torch package; the venv and the verification need torch")
        return v

    @field_validator("torch_python", mode="before")
    @classmethod
    def _torch_python(cls, v: Any) -> Any:
        return str(v) if isinstance(v, float) else v  # YAML reads 3.12 as a number

    @field_validator("python")
    @classmethod
    def _python(cls, v: str | None) -> str | None:
        if v is None or _PYTHON_CMD_RE.match(v):
            return v
        return _path(v)

    @field_validator("users")
    @classmethod
    def _users(cls, v: list[Any]) -> list[str]:
        for name in v:
            if not isinstance(name, str) or not _USER_RE.match(name):
                raise ValueError(f"{name!r} is not a valid Linux user name")
        return v

    @field_validator("expected_gpus")
    @classmethod
    def _gpus(cls, v: list[Any]) -> list[str]:
        from provision.catalog import normalise_pci_id

        return [normalise_pci_id(str(item)) for item in v]

    @field_validator("key_fingerprint", mode="before")
    @classmethod
    def _fingerprint(cls, v: Any) -> str:
        text = re.sub(r"\s+", "", str(v)).upper()
        if not re.fullmatch(r"[0-9A-F]{40}", text):
            raise ValueError("not a 40-hex-digit OpenPGP fingerprint")
        return text

    @field_validator("fallback_env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError("not a mapping")
        out: dict[str, str] = {}
        for key, value in v.items():
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable name")
            if isinstance(value, bool):
                out[key] = "1" if value else "0"
            elif isinstance(value, (int, float, str)):
                out[key] = str(value)
            else:
                raise ValueError(f"{key}: value must be a string or number, not {type(value).__name__}")
        return out

    @field_validator("repo_base_url", "key_url", "wheel_index_url", "pypi_index_url", "python_standalone_url")
    @classmethod
    def _https(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and v.startswith("http://") and not info.data.get("allow_insecure_http", False):
            local = " (or a file:/// wheel directory)" if info.field_name == "wheel_index_url" else ""
            raise ValueError(
                f"is plain http://: anyone on the way can read or change what it serves; use https://{local}, "
                "or set provision_allow_insecure_http: true for a mirror you trust")
        return v

    @field_validator("repo_username")
    @classmethod
    def _repo_username(cls, v: str | None) -> str | None:
        if v is not None and not _REPO_USER_RE.match(v):
            raise ValueError("is not a mirror user name (no spaces, quotes, colons or shell metacharacters)")
        return v

    @field_validator("repo_password", mode="before")
    @classmethod
    def _repo_password(cls, v: Any) -> Any:
        text = v.get_secret_value() if isinstance(v, SecretStr) else v
        if text is not None and (not isinstance(text, str) or not _REPO_PASSWORD_RE.match(text)):
            raise ValueError("is not usable as a mirror password (1 to 256 printable ASCII characters, no spaces)")
        return v

    @field_validator("repo_password")
    @classmethod
    def _no_credentials_over_http(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Credentials go to the mirror (apt), and to the key and wheel URLs on the mirror's host (rocm_install,
        torch_venv): none of them may be plain http:// unless it is this machine's loopback. Never allowed by
        provision_allow_insecure_http: a password sent in the clear is a password given away."""
        if v is None:
            return v
        base = str(info.data.get("repo_base_url") or "")
        mirror = urlsplit(base).hostname
        for name in ("repo_base_url", "key_url", "wheel_index_url"):
            url = str(info.data.get(name) or "")
            if url.startswith("http://") and (name == "repo_base_url" or urlsplit(url).hostname == mirror) \
                    and not _loopback(url):
                raise ValueError(
                    f"would be sent over plain http:// to {url} (provision_{name}): credentials only go to an "
                    "https:// mirror (or this machine's loopback); provision_allow_insecure_http does not change this")
        return v

    @model_validator(mode="after")
    def _credentials_pair(self) -> HostSpec:
        if (self.repo_username is None) != (self.repo_password is None):
            raise ValueError("provision_repo_username and provision_repo_password go together: set both or neither")
        return self

    def to_vars(self) -> dict[str, Any]:
        """The spec as inventory variables (`provision_*`), e.g. for extra-vars or JSON output."""
        return {PREFIX + k: v for k, v in self.model_dump(mode="json").items()}


FIELDS = tuple(HostSpec.model_fields)
VARIABLES = tuple(PREFIX + f for f in FIELDS)
# Run-level settings, not part of a host's spec: upgrade.yml reads provision_serial and provision_max_fail_percent
# for `serial` and `max_fail_percentage` (the CLI's --serial and --max-fail-percent pass them as extra vars);
# provision_progress_file is where the controller's downloads write their progress for the CLI's live display;
# provision_artifact_lock is the fleet's lock file of wheel sha256s (beside the inventory), and
# provision_artifact_lock_update (--update-lock) rewrites what differs in it on purpose.
RUN_VARIABLES = ("provision_serial", "provision_max_fail_percent", "provision_progress_file", "provision_artifact_lock",
                 "provision_artifact_lock_update")
