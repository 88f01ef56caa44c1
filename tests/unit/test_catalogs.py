"""Integrity of the data files that the CLI and the roles share: every row cites sources that exist,
ids are unique, and the facts the planner depends on are there."""

from __future__ import annotations

import re

import pytest

from provision import datafiles, pins
from provision.catalog import catalog, gfx_from_target_version, gfx_from_version, normalise_pci_id
from provision.envcatalog import env_catalog


def test_every_gpu_row_cites_defined_sources() -> None:
    data = datafiles.load("gpus")
    keys = set(data["sources"])
    ids = []
    for chip in data["chips"]:
        assert set(chip["sources"]) <= keys, chip["chip"]
        for dev in chip["devices"]:
            assert re.fullmatch(r"[0-9a-f]{4}", dev["pci_id"]), dev
            assert dev["sources"] and set(dev["sources"]) <= keys, dev
            assert (dev["rocm70"] == "supported") == (dev["os_profile"] is not None), dev
            if dev["os_profile"]:
                assert dev["os_profile"] in data["os_profiles"]
            ids.append(dev["pci_id"])
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("gfx", ["gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1010",
                                 "gfx1011", "gfx1012", "gfx1030", "gfx1031", "gfx1032", "gfx1034", "gfx1100",
                                 "gfx1101", "gfx1102", "gfx1200", "gfx1201"])
def test_every_reference_chip_is_covered(gfx: str) -> None:
    assert catalog().chip_for_gfx(gfx) is not None


def test_seed_report_card_facts() -> None:
    dev = catalog().device("1002:731f")
    assert dev is not None
    assert (dev.chip.gfx, dev.chip.family, dev.rocm70) == ("gfx1010", "RDNA1", "unsupported")
    assert dev.chip.override_gfx_version is None  # 10.3.0 would cross into RDNA2


def test_support_matrix_spot_checks() -> None:
    w6800 = catalog().device("73a3")
    assert w6800 and w6800.rocm70 == "supported" and "debian-12" not in w6800.supported_os
    mi210 = catalog().device("740f")
    assert mi210 and "debian-12" in mi210.supported_os
    rx6800 = catalog().device("73bf")
    assert rx6800 and rx6800.rocm70 == "same-isa-unofficial"


@pytest.mark.parametrize(("value", "expected"), [("10.3.0", "gfx1030"), ("9.0.10", "gfx90a"), ("11.0.0", "gfx1100")])
def test_gfx_versions(value: str, expected: str) -> None:
    assert gfx_from_version(value) == expected


def test_kfd_target_versions() -> None:
    assert gfx_from_target_version(100100) == "gfx1010"
    assert gfx_from_target_version(90010) == "gfx90a"
    assert gfx_from_target_version(110001) == "gfx1101"


@pytest.mark.parametrize("bad", ["1002:73g1", "73", "nvidia", "1002-731f"])
def test_bad_pci_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_pci_id(bad)


def test_env_catalog_knows_real_names_and_rejects_fake_ones() -> None:
    cat = env_catalog()
    for name in ("MIOPEN_DEBUG_CONV_GEMM", "MIOPEN_DEBUG_CONV_WINOGRAD", "MIOPEN_DEBUG_CONV_IMPLICIT_GEMM",
                 "MIOPEN_DEBUG_CONV_DIRECT", "MIOPEN_DEBUG_CONV_FFT", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS",
                 "MIOPEN_FIND_MODE", "MIOPEN_USER_DB_PATH", "HSA_OVERRIDE_GFX_VERSION", "AMD_DIRECT_DISPATCH",
                 "MIOPEN_DEBUG_CONVOLUTION_DETERMINISTIC", "MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2"):
        assert cat.get(name) is not None, name
    assert cat.get("MIOPEN_DEBUG_CONV_DET") is None
    assert cat.not_real["MIOPEN_DEBUG_CONV_DET"].instead == "MIOPEN_DEBUG_CONVOLUTION_DETERMINISTIC"
    var = cat.get("MIOPEN_FIND_MODE")
    assert var is not None and cat.value_problem(var, "NORMAL") is None and cat.value_problem(var, "FASTEST")


def test_fallback_profile_uses_only_catalogued_workarounds() -> None:
    profile = datafiles.load("fallback")["profiles"]["default"]["env"]
    for name, value in profile.items():
        var = env_catalog().get(name)
        assert var is not None and var.workaround, name
        assert env_catalog().value_problem(var, value) is None


def test_pins_match_the_reference_facts() -> None:
    data = pins.all_pins()
    assert data["rocm"]["version"] == "7.0.0" and data["amdgpu_driver"]["version"] == "30.10"
    assert pins.codename_for("debian-12") == "jammy"
    assert pins.repo()["key_fingerprint"] == "CA8BB4727A47B4D09B4EE8969386B48A1A693C5C"
    assert {p["name"] for p in pins.torch()["packages"]} == {"torch", "torchvision", "torchaudio",
                                                             "pytorch_triton_rocm"}
    assert all("cp312" in p["file"] for p in pins.torch()["packages"])


def test_convcheck_workaround_ladder_uses_only_real_variables() -> None:
    """The suite ships its own ladder (it runs on hosts without PyYAML); every name must be in the catalog."""
    import json
    from pathlib import Path

    import provision.convcheck

    ladder = json.loads((Path(provision.convcheck.__file__).parent / "workarounds.json").read_text())
    names = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.startswith("MIOPEN_"):
                    names.add(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str) and node.startswith("MIOPEN_"):
            names.add(node.split("=")[0])

    walk(ladder)
    assert names, "no MIOPEN_ variable found in workarounds.json"
    unknown = sorted(n for n in names if env_catalog().get(n) is None)
    assert not unknown, unknown
