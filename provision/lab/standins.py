"""The stand-in package sets: AMD's real names, versions and dependency structure, with tiny contents."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from provision.lab.debs import DebSpec, FileEntry


@dataclass(frozen=True)
class RocmRelease:
    version: str  # 5.2.0
    build: str  # 50200
    repo_dir: str  # 5.2 (directory under rocm/apt/)
    runtime_version: str  # rocminfo "Runtime Version"
    kmd_version: str  # rocminfo "ROCk module version ..." ("" = the 5.x wording)
    hip_version: str  # hipconfig --version
    upstream: dict[str, str]  # package -> upstream version (before .<build>)
    rocblas_targets: tuple[str, ...]

    @property
    def opt(self) -> str:
        return f"/opt/rocm-{self.version}"

    def pkg_version(self, package: str, revision: str) -> str:
        return f"{self.upstream.get(package, self.version)}.{self.build}-{revision}"


R52 = RocmRelease(
    "5.2.0", "50200", "5.2", "1.1", "", "5.2.21151-afdc89f8",
    {"rocm-llvm": "14.0.0.22204", "comgr": "2.4.0", "hsa-rocr": "1.5.0", "rocminfo": "1.0.0",
     "hip-runtime-amd": "5.2.21151", "hip-dev": "5.2.21151", "rocblas": "2.44.0", "miopen-hip": "2.17.0"},
    ("gfx803", "gfx900", "gfx906", "gfx908", "gfx90a", "gfx1030"),
)
R70 = RocmRelease(
    "7.0.0", "70000", "7.0", "1.18", "6.14.14", "7.0.51831-a3e329ad8",
    {"rocm-llvm": "20.0.0.25314", "comgr": "3.0.0", "hsa-rocr": "1.18.0", "rocminfo": "1.0.0",
     "hip-runtime-amd": "7.0.51831", "hip-dev": "7.0.51831", "rocblas": "5.0.0", "miopen-hip": "3.5.0",
     "hipblaslt": "1.0.0"},
    ("gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1151",
     "gfx1200", "gfx1201"),
)
R52_REVISION = "65"
R70_REVISIONS = {"jammy": "17~22.04", "noble": "17~24.04"}
R52_SUITES = ("ubuntu", "focal", "jammy")
R70_SUITES = ("jammy", "noble")
AMDGPU_2220_SUITES = ("focal", "jammy")
AMDGPU_2220_VERSION = "1:5.16.9.22.20-1438746~20.04"
AMDGPU_3010_VERSIONS = {"jammy": "1:6.14.14.30100000-2212064.22.04", "noble": "1:6.14.14.30100000-2212064.24.04"}
GRAPHICS_70_BUILD = {"jammy": "2212064.22.04", "noble": "2212064.24.04"}


# Lab fault switches in rocm-core's postinst (docs/lab.md), files a test creates on a host:
#   /etc/provision-lab/fail-postinst  the postinst exits 1, as a real package's failing maintainer script does
#   /etc/provision-lab/hold-postinst  the postinst writes /etc/provision-lab/postinst-held and waits (up to
#                                     10 min) while the switch exists: dpkg is mid-install at a known point
POSTINST_FAULTS = """\
if [ -e /etc/provision-lab/fail-postinst ]; then
  echo "rocm-core postinst: failing on purpose (lab fault switch /etc/provision-lab/fail-postinst)" >&2
  exit 1
fi
if [ -e /etc/provision-lab/hold-postinst ]; then
  echo "$$" > /etc/provision-lab/postinst-held
  i=0
  while [ -e /etc/provision-lab/hold-postinst ] && [ "$i" -lt 3000 ]; do sleep 0.2; i=$((i + 1)); done
  rm -f /etc/provision-lab/postinst-held
fi
"""


def guest_text(name: str) -> str:
    return resources.files("provision.lab.guest").joinpath(name).read_text()


def _doc(rel: RocmRelease, name: str) -> dict[str, FileEntry]:
    return {f"{rel.opt}/share/doc/{name}/README.lab": FileEntry(f"{name} {rel.version}: rocm-provision lab stand-in\n")}


def rocm_packages(rel: RocmRelease, revision: str) -> list[DebSpec]:
    """The ROCm userspace set of one release, for one package revision (suite)."""
    opt = rel.opt
    prio = rel.build

    def pkg(name: str, depends: list[str], files: dict[str, FileEntry] | None = None,
            description: str = "", arch: str = "amd64") -> DebSpec:
        content = _doc(rel, name)
        content.update(files or {})
        return DebSpec(name, rel.pkg_version(name, revision), depends, arch, description, files=content)

    def lib(path: str) -> dict[str, FileEntry]:
        return {f"{opt}/lib/{path}": FileEntry(f"lab stand-in for {path}\n")}

    rocminfo_script = (guest_text("rocminfo.py").replace("@ROCM_VERSION@", rel.version)
                       .replace("@RUNTIME_VERSION@", rel.runtime_version).replace("@KMD_VERSION@", rel.kmd_version))
    core = pkg("rocm-core", [], {f"{opt}/.info/version": FileEntry(f"{rel.version}-{revision}\n"),
                                 **lib("librocm-core.so.1")}, "ROCm core: version info and the /opt/rocm link")
    core.scripts = {
        "postinst": POSTINST_FAULTS + f'if [ "$1" = configure ]; then\n'
                                      f"  update-alternatives --install /opt/rocm rocm {opt} {prio}\nfi",
        "prerm": f'if [ "$1" = remove ] || [ "$1" = deconfigure ]; then\n'
                 f"  update-alternatives --remove rocm {opt} || true\nfi",
    }
    rocminfo = pkg("rocminfo", ["hsa-rocr", "rocm-core"], {f"{opt}/bin/rocminfo": FileEntry(rocminfo_script, 0o755)},
                   "ROCm system info (lab stand-in: reports the host's simulated agents)")
    rocminfo.symlinks[f"{opt}/bin/rocm_agent_enumerator"] = "rocminfo"
    hsa_depends = ["rocm-core"] + (["libdrm-amdgpu-amdgpu1"] if rel.version.startswith("7.") else [])
    hip_major = rel.version.split(".")[0]
    rocblas_files = lib(f"librocblas.so.{4 if hip_major == '7' else 0}")
    for target in rel.rocblas_targets:
        rocblas_files[f"{opt}/lib/rocblas/library/TensileLibrary_lazy_{target}.dat"] = FileEntry(f"{target}\n")
    specs = [
        core,
        pkg("rocm-llvm", ["rocm-core"], {f"{opt}/llvm/bin/clang.lab": FileEntry("stand-in\n")}),
        pkg("comgr", ["rocm-core"], lib("libamd_comgr.so.2")),
        pkg("hsa-rocr", hsa_depends, lib("libhsa-runtime64.so.1"), "ROCr HSA runtime"),
        rocminfo,
        pkg("hip-runtime-amd", ["hsa-rocr", "rocminfo", "comgr", "rocm-llvm", "rocm-core"], {
            **lib(f"libamdhip64.so.{hip_major}"),
            f"{opt}/bin/hipconfig": FileEntry(f"#!/bin/sh\nprintf %s '{rel.hip_version}'\n", 0o755)}),
        pkg("hip-dev", ["hip-runtime-amd", "rocm-core"], {f"{opt}/include/hip/hip_version.h": FileEntry(
            f"#define HIP_VERSION_MAJOR {hip_major}\n")}),
        pkg("rocblas", ["hip-runtime-amd", "rocm-core"] + (["hipblaslt"] if hip_major == "7" else []),
            rocblas_files),
        pkg("miopen-hip", ["hip-runtime-amd", "rocblas", "rocm-core"], lib("libMIOpen.so.1"), "AMD's DNN library"),
        pkg("rocm-language-runtime", ["rocm-core", "hsa-rocr", "comgr"]),
        pkg("rocm-hip-runtime", ["rocm-core", "rocm-language-runtime", "hip-runtime-amd", "rocminfo"]),
        pkg("rocm-hip-runtime-devel", ["rocm-core", "rocm-hip-runtime", "hip-dev", "rocm-llvm"]),
        pkg("rocm-hip-libraries", ["rocm-core", "rocm-hip-runtime", "rocblas"]),
        pkg("rocm-ml-libraries", ["rocm-core", "rocm-hip-libraries", "miopen-hip"]),
        pkg("rocm-hip-sdk", ["rocm-core", "rocm-hip-runtime-devel", "rocm-hip-libraries"]),
        pkg("rocm-ml-sdk", ["rocm-core", "rocm-ml-libraries", "rocm-hip-sdk"]),
        pkg("rocm-utils", ["rocm-core", "rocminfo"]),
        pkg("rocm-dev", ["rocm-core", "hip-dev", "rocminfo", "rocm-llvm"]),
    ]
    if hip_major == "5":
        specs += [
            pkg("rocm-libs", ["rocm-core", "rocblas", "miopen-hip"]),
            pkg("rocm-dkms", ["amdgpu-dkms", "rocm-dev"]),
        ]
    else:
        specs += [
            pkg("hipblaslt", ["hip-runtime-amd", "rocm-core"], lib("libhipblaslt.so.1")),
            pkg("rocm", ["rocm-core", "rocm-hip-sdk", "rocm-ml-sdk", "rocm-utils", "rocm-dev"],
                description="ROCm meta package"),
        ]
    return specs


def amdgpu_dkms(version: str) -> list[DebSpec]:
    module = version.split(":", 1)[-1].split("-")[0]
    src = f"/usr/src/amdgpu-{version.split(':', 1)[-1]}"
    firmware = DebSpec("amdgpu-dkms-firmware", version, [], "all", "amdgpu firmware", "kernel", files={
        "/usr/lib/firmware/updates/amdgpu/README.lab": FileEntry("stand-in firmware\n")})
    dkms = DebSpec("amdgpu-dkms", version, [f"amdgpu-dkms-firmware (= {version})"], "all",
                   "amdgpu driver in DKMS format (lab stand-in: builds nothing)", "kernel", files={
                       f"{src}/dkms.conf": FileEntry(f'PACKAGE_NAME="amdgpu"\nPACKAGE_VERSION="{module}"\n')})
    return [firmware, dkms]


def graphics_packages(suite: str) -> list[DebSpec]:
    build = GRAPHICS_70_BUILD[suite]
    common = DebSpec("libdrm-amdgpu-common", f"1.0.0.70000-{build}", [], "all", files={
        "/opt/amdgpu/share/libdrm/amdgpu.ids": FileEntry("# lab stand-in\n")})
    libdrm = f"1:2.4.125.70000-{build}"
    return [
        common,
        DebSpec("libdrm-amdgpu-amdgpu1", libdrm, ["libdrm-amdgpu-common"], files={
            "/opt/amdgpu/lib/x86_64-linux-gnu/libdrm_amdgpu.so.1": FileEntry("stand-in\n")}),
        DebSpec("libdrm2-amdgpu", libdrm, ["libdrm-amdgpu-common"], files={
            "/opt/amdgpu/lib/x86_64-linux-gnu/libdrm.so.2": FileEntry("stand-in\n")}),
    ]


USECASES_2220 = {
    "graphics": "", "rocm": "rocm-hip-runtime rocm-language-runtime rocm-hip-libraries rocm-utils",
    "rocmdev": "rocm-dev", "hip": "rocm-hip-runtime", "hiplibsdk": "rocm-hip-sdk", "lrt": "rocm-language-runtime",
    "mllib": "rocm-ml-libraries", "mlsdk": "rocm-ml-sdk",
}
USECASES_70 = {
    "graphics": "libdrm-amdgpu-amdgpu1 libdrm2-amdgpu", "rocm": "rocm", "rocmdev": "rocm-dev",
    "hip": "rocm-hip-runtime", "hiplibsdk": "rocm-hip-sdk", "lrt": "rocm-language-runtime",
    "mllib": "rocm-ml-libraries", "mlsdk": "rocm-ml-sdk",
}


def _installer_script(version: str, usecases: dict[str, str]) -> str:
    cases = "\n".join(f'        {name}) echo "{pkgs}" ;;' for name, pkgs in usecases.items())
    listing = "\n".join(f'            echo "  {name}"' for name in usecases)
    return (guest_text("amdgpu-install.sh").replace("@VERSION@", version).replace("@USECASES@", cases)
            .replace("@LIST@", listing).replace("@DEFAULT_USECASE@", "graphics"))


def amdgpu_install_2220(base_url: str, suite: str) -> DebSpec:
    amdgpu_list = f"deb [arch=amd64] {base_url}/amdgpu/22.20/ubuntu {suite} main\n"
    rocm_list = f"deb [arch=amd64] {base_url}/rocm/apt/5.2 {suite} main\n"
    pin = "Package: *\nPin: release o=repo.radeon.com\nPin-Priority: 600\n"
    return DebSpec(
        "amdgpu-install", "22.20.50200-1", ["ca-certificates"], "all",
        "AMDGPU driver repository and installer (22.20, ROCm 5.2)", "admin",
        files={"/usr/bin/amdgpu-install": FileEntry(_installer_script("22.20.50200-1", USECASES_2220), 0o755),
               "/etc/apt/sources.list.d/amdgpu.list": FileEntry(amdgpu_list),
               "/etc/apt/sources.list.d/rocm.list": FileEntry(rocm_list),
               "/etc/apt/preferences.d/repo-radeon-pin-600": FileEntry(pin)},
        symlinks={"/usr/bin/amdgpu-uninstall": "amdgpu-install"},
        conffiles=["/etc/apt/sources.list.d/amdgpu.list", "/etc/apt/sources.list.d/rocm.list",
                   "/etc/apt/preferences.d/repo-radeon-pin-600"],
    )


def amdgpu_install_70(base_url: str, suite: str, keyring: bytes) -> DebSpec:
    signed = "signed-by=/etc/apt/keyrings/rocm.gpg"
    amdgpu_list = (f"deb [arch=amd64,i386 {signed}] {base_url}/amdgpu/30.10/ubuntu {suite} main\n"
                   f"#deb-src [{signed}] {base_url}/amdgpu/30.10/ubuntu {suite} main\n")
    rocm_list = (f"deb [arch=amd64 {signed}] {base_url}/rocm/apt/7.0 {suite} main\n"
                 f"deb [arch=amd64,i386 {signed}] {base_url}/graphics/7.0/ubuntu {suite} main\n")
    pin = "Package: *\nPin: release o=repo.radeon.com\nPin-Priority: 600\n"
    conffiles = ["/etc/apt/sources.list.d/amdgpu.list", "/etc/apt/sources.list.d/rocm.list",
                 "/etc/apt/preferences.d/repo-radeon-pin-600"]
    return DebSpec(
        "amdgpu-install", "7.0.70000-1", ["ca-certificates"], "all",
        "AMDGPU driver repository and installer (30.10, ROCm 7.0)", "admin",
        files={"/usr/bin/amdgpu-install": FileEntry(_installer_script("7.0.70000-1", USECASES_70), 0o755),
               "/etc/apt/sources.list.d/amdgpu.list": FileEntry(amdgpu_list),
               "/etc/apt/sources.list.d/rocm.list": FileEntry(rocm_list),
               "/etc/apt/preferences.d/repo-radeon-pin-600": FileEntry(pin),
               "/etc/apt/keyrings/rocm.gpg": FileEntry(keyring)},
        symlinks={"/usr/bin/amdgpu-uninstall": "amdgpu-install"},
        conffiles=conffiles,
    )


def kernel_packages(kernel: str, ubuntu: bool) -> list[DebSpec]:
    """Stand-ins for the distro's kernel packages of the controller's kernel (containers share it)."""
    specs = [DebSpec(f"linux-headers-{kernel}", "1.0-lab1", [], "amd64", "kernel headers (lab stand-in)",
                     "kernel", files={f"/usr/src/linux-headers-{kernel}/Makefile": FileEntry("# stand-in\n")})]
    if ubuntu:
        specs.append(DebSpec(f"linux-modules-extra-{kernel}", "1.0-lab1", [], "amd64",
                             "extra kernel modules (Ubuntu-only name; lab stand-in)", "kernel", files={
                                 f"/lib/modules/{kernel}/kernel/lab-modules-extra.txt": FileEntry("stand-in\n")}))
    return specs
