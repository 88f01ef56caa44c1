"""`provision gpus identify` on real `lspci` / `rocminfo` / `rocm_agent_enumerator` pastes from public
issues (tests/fixtures/pastes/index.yaml cites each one). The expected values were written from the
PCI id tables, not from this code's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provision.identify import identify

PASTES = Path(__file__).parent.parent / "fixtures" / "pastes"
INDEX = yaml.safe_load((PASTES / "index.yaml").read_text())


def _ident(entry: dict):
    text = (PASTES / entry["file"]).read_text()
    kind = entry["kind"]
    env = {"HSA_OVERRIDE_GFX_VERSION": entry["env_override"]} if entry.get("env_override") else None
    return identify(
        lspci=text if kind == "lspci" else None,
        rocminfo=text if kind == "rocminfo" else None,
        agents=text if kind == "agents" else None,
        env=env,
    )


def test_corpus_is_large_enough_and_cited() -> None:
    assert len(INDEX) >= 10
    for entry in INDEX:
        assert entry["source"].startswith("https://github.com/"), entry["file"]
        assert (PASTES / entry["file"]).is_file()


@pytest.mark.parametrize("entry", INDEX, ids=[e["file"] for e in INDEX])
def test_paste_is_classified(entry: dict) -> None:
    ident = _ident(entry)
    expected = [e for e in entry["expected"] if e["role"] != "cpu"]
    assert len(ident.gpus) == len(expected), [g.to_dict() for g in ident.gpus]
    for want, got in zip(expected, ident.gpus, strict=True):
        if want["pci_id"]:
            assert got.pci_id == want["pci_id"]
        if want["gfx_reported"]:
            assert got.gfx_runtime == want["gfx_reported"]
        hardware = got.gfx or (got.gfx_runtime if not got.pci_id else None)
        if want["gfx_hardware"]:
            assert hardware == want["gfx_hardware"], got.to_dict()
        if want["role"] == "compute" and want["gfx_hardware"] is None:
            assert got.role in ("compute", "unknown-amd")
        else:
            assert got.role == want["role"], got.to_dict()


def test_override_on_mi210_is_noticed() -> None:
    entry = next(e for e in INDEX if e["file"] == "mi210-override-rocm-5238.rocminfo.txt")
    ident = _ident(entry)
    assert ident.override == "10.3.0"
    assert ident.override_source == "environment"
    assert ident.gpus[0].gfx == "gfx90a"


def test_subsystem_id_is_not_a_second_gpu() -> None:
    ident = identify(lspci=(PASTES / "navi31-radeontop-151.lspci.txt").read_text())
    assert [g.pci_id for g in ident.gpus] == ["1002:744c"]


def test_plain_lspci_asks_for_nn() -> None:
    ident = identify(lspci=(PASTES / "navi21-rx6950xt-radeontop-139.lspci.txt").read_text())
    assert any("lspci -nn" in n for n in ident.notes)
    assert ident.gpus[0].chip.startswith("Navi 21")
    assert ident.gpus[0].gfx == "gfx1030"


def terminal_wrap(text: str, width: int) -> str:
    """What a terminal of `width` columns does to a long line when it is copied: hard breaks every `width`
    characters, in the middle of a token if that is where the column ends; nothing is lost or added."""
    out = []
    for line in text.splitlines():
        out += [line[i:i + width] for i in range(0, len(line), width)] or [""]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("width", [40, 52, 64, 80, 100])
@pytest.mark.parametrize("entry", [e for e in INDEX if e["kind"] in ("lspci", "rocminfo")],
                         ids=lambda e: e["file"])
def test_wrapped_paste_is_read_like_the_original(entry: dict, width: int) -> None:
    text = (PASTES / entry["file"]).read_text()
    env = {"HSA_OVERRIDE_GFX_VERSION": entry["env_override"]} if entry.get("env_override") else None
    kind = entry["kind"]
    wrapped = terminal_wrap(text, width)
    if wrapped.count("\n") == text.count("\n") + (0 if text.endswith("\n") else 1):
        pytest.skip(f"no line of this paste is longer than {width} columns")
    original = _ident(entry)
    again = identify(lspci=wrapped if kind == "lspci" else None, rocminfo=wrapped if kind == "rocminfo" else None,
                     env=env)
    keys = ("pci_id", "gfx", "gfx_runtime", "role", "uuid")
    assert [[getattr(g, k) for k in keys] for g in again.gpus] == [[getattr(g, k) for k in keys] for g in original.gpus]


@pytest.mark.parametrize("kind", ["lspci", "rocminfo"])
def test_eighty_thousand_character_line_is_read_in_under_a_second(kind: str) -> None:
    import time

    hostile = {"lspci": "VGA compatible controller [0300]: " + " " * 80000 + "x\n",
               "rocminfo": "  Name:" + " " * 80000 + "x\n  Chip ID: " + "(0x" * 20000 + "\n"}[kind]
    real = (PASTES / ("navi31-radeontop-159.lspci.txt" if kind == "lspci"
                      else "navi31-rx7900xtx-rocm-2866.rocminfo.txt")).read_text()
    start = time.monotonic()
    ident = identify(**{kind: hostile + real})
    assert time.monotonic() - start < 1.0
    assert any(g.pci_id == "1002:744c" for g in ident.gpus)
