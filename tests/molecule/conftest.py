"""Print each Molecule scenario's duration in the pytest summary."""

from __future__ import annotations

import pytest

from tests.molecule.test_molecule import DURATIONS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if DURATIONS:
        terminalreporter.section("molecule timings")
        for line in DURATIONS:
            terminalreporter.write_line(line)
