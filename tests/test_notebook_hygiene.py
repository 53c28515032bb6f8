"""Notebooks are committed without outputs, and each declares the common parameters."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest
from shipbook.phases import COMMON_PARAMETERS, PHASES, STANDALONE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "tests/fixtures/notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_no_outputs_and_a_tagged_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(path))
    missing = [p for p in COMMON_PARAMETERS if p not in declared]
    assert not missing, f"{path.name}: parameters cell lacks {missing}"
    assert declared["dry_run"]["default"] == "True", f"{path.name}: dry_run must default to the safe choice"


def test_only_known_notebooks_live_in_notebooks_dir():
    known = set(PHASES.values()) | set(STANDALONE.values())
    stray = [p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p.name not in known]
    assert stray == []
