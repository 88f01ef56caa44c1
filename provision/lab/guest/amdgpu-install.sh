#!/bin/bash
# rocm-provision lab stand-in for AMD's amdgpu-install @VERSION@ (same options, tiny packages).
#   amdgpu-install [-y] [--usecase=rocm,dkms,...] [--no-dkms]      install the use cases' packages
#   amdgpu-install [-y] --uninstall [--rocmrelease=<x.y.z>|all]   remove what amdgpu-install installs
#   amdgpu-install --list-usecase
set -euo pipefail
PROG=$(basename "$0")
YES=()
USECASES=""
NO_DKMS=0
UNINSTALL=0
RELEASE=""
[ "$PROG" = "amdgpu-uninstall" ] && UNINSTALL=1

usecase_packages() {
    case "$1" in
@USECASES@
        *) echo "ERROR: unknown usecase '$1' (see --list-usecase)" >&2; exit 2 ;;
    esac
}

for arg in "$@"; do
    case "$arg" in
        -y|--yes) YES=(-y) ;;
        --usecase=*) USECASES="${arg#--usecase=}" ;;
        --no-dkms) NO_DKMS=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --rocmrelease=*) RELEASE="${arg#--rocmrelease=}" ;;
        --accept-eula|--no-32|--opencl=*|--vulkan=*) ;;
        --list-usecase)
            echo "If --usecase option is not present, the default selection is \"@DEFAULT_USECASE@\""
            echo "Available use cases:"
@LIST@
            exit 0 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "ERROR: unsupported option: $arg" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "ERROR: $PROG must be run as root (sudo)" >&2
    exit 1
fi

if [ "$UNINSTALL" -eq 1 ]; then
    installed=$(dpkg-query -W -f='${Package} ${Version} ${Status}\n' 2>/dev/null | awk '$NF == "installed" {print $1, $2}')
    remove=()
    while read -r pkg ver; do
        [ -n "$pkg" ] || continue
        case "$pkg" in
            rocm-core*)
                if [ -z "$RELEASE" ] || [ "$RELEASE" = "all" ] || [[ "$ver" == "$RELEASE"* ]]; then remove+=("$pkg"); fi ;;
            amdgpu-dkms|amdgpu-dkms-firmware|amdgpu-core|libdrm-amdgpu-*|libdrm2-amdgpu)
                if [ -z "$RELEASE" ] || [ "$RELEASE" = "all" ]; then remove+=("$pkg"); fi ;;
        esac
    done <<< "$installed"
    if [ "${#remove[@]}" -eq 0 ]; then
        echo "Nothing to uninstall."
        exit 0
    fi
    # Every ROCm package depends on rocm-core: purging it removes the whole release.
    DEBIAN_FRONTEND=noninteractive apt-get purge "${YES[@]}" "${remove[@]}"
    DEBIAN_FRONTEND=noninteractive apt-get autoremove "${YES[@]}"
    exit 0
fi

[ -n "$USECASES" ] || USECASES="@DEFAULT_USECASE@"
packages=()
if [ "$NO_DKMS" -eq 0 ]; then packages+=(amdgpu-dkms); fi
IFS=',' read -r -a cases <<< "$USECASES"
for case_ in "${cases[@]}"; do
    [ "$case_" = "dkms" ] && continue
    read -r -a more <<< "$(usecase_packages "$case_")"
    packages+=("${more[@]}")
done
if [ "${#packages[@]}" -eq 0 ]; then
    echo "Nothing to install."
    exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install "${YES[@]}" "${packages[@]}"
