"""notebooks/intro_to_bert.ipynb runs top to bottom in a fresh kernel, its cells print what they should, and the
committed outputs are the ones the code gives now (where they do not depend on the machine).

Cells are found by their id; cells tagged `varies` (the device, training and what follows from it) are checked
for what they must show but not compared with the committed text. To refresh the committed outputs after a
change: `python tests/test_notebook.py` (executes the notebook in place, as this test does).
"""
from __future__ import annotations

import copy
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "intro_to_bert.ipynb"
VARIES = "varies"  # the tag of cells whose text depends on the machine (device, training arithmetic)
CELL_TIMEOUT_S = 1800  # a cell trains for a minute on two idle cores; a loaded CI machine gets far more room
NUMBER = re.compile(r"-?\d+\.\d+")


def execute(path: Path, cwd: Path):
    """The notebook at `path`, executed in a fresh python3 kernel started in `cwd`, with bertkit from this tree."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env, cwd=str(cwd))
    return nb


def _clients_installed() -> bool:
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The committed notebook and its re-execution (once per test session), with how long the run took."""
    if not _clients_installed():
        pytest.skip("the notebook test needs nbclient, nbformat and ipykernel: pip install -r requirements.txt")
    import nbformat

    committed = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    fresh = execute(NOTEBOOK, tmp_path_factory.mktemp("notebook_cwd"))
    return committed, fresh, time.perf_counter() - start


def cells(nb) -> dict:
    return {cell.id: cell for cell in nb.cells}


def text_of(cell) -> str:
    """Everything a code cell printed, and the plain text of what it returned."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def test_the_notebook_runs_and_prints_what_it_should(run):
    _, nb, seconds = run
    print(f"notebook executed in {seconds:.0f} s")
    by_id = cells(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"cell {cell.id}: {out.ename}: {out.evalue}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"cell {cell.id} wrote to stderr: {out.text}"
    assert "101 7592 1010 14324 999 102" in text_of(by_id["tokenize"])
    assert "error: minilm has no masked-LM head" in text_of(by_id["fill-mask"])
    assert "same-sense above different-sense: True" in text_of(by_id["bank-check"])
    accuracy = float(re.search(r"fine-tuned accuracy: (\d\.\d+)", text_of(by_id["trainer"])).group(1))
    assert 0.6 <= accuracy <= 0.95, accuracy
    manual = float(re.search(r"hand-written loop accuracy: (\d\.\d+)", text_of(by_id["manual"])).group(1))
    assert 0.6 <= manual <= 0.95, manual
    assert "BERT-base: 109,482,240 parameters" in text_of(by_id["bert-base"])
    # The rich views: tables for tokens, the word quiz and the training result; pictures for attention.
    for cell_id, kind in (("tokenize-table", "text/html"), ("bank", "text/html"), ("trainer", "text/html"),
                          ("attention-grid", "image/png"), ("attention-focus", "text/html"),
                          ("embed-heatmap", "image/png"), ("confusion", "image/png")):
        kinds = {k for out in by_id[cell_id].outputs if out.output_type == "execute_result" for k in out.data}
        assert kind in kinds, f"cell {cell_id} shows {sorted(kinds)}, not {kind}"


def _same_text(committed: str, fresh: str) -> bool:
    """Equal, except numbers may differ in their last printed digit (float arithmetic differs between CPUs)."""
    if NUMBER.sub("#", committed) != NUMBER.sub("#", fresh):
        return False
    for a, b in zip(NUMBER.findall(committed), NUMBER.findall(fresh)):
        step = 10.0 ** -len(a.partition(".")[2])
        if abs(float(a) - float(b)) > 2 * step:
            return False
    return True


def _comparable(cell) -> list[tuple[str, str]]:
    """(kind, text) per output: printed text, and the plain text of results that have no picture or table."""
    shown: list[tuple[str, str]] = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            if shown and shown[-1][0] == out.name:  # one print may arrive in several pieces: timing decides where
                shown[-1] = (out.name, shown[-1][1] + out.text)
            else:
                shown.append((out.name, out.text))
        elif out.output_type in ("execute_result", "display_data"):
            rich = sorted(k for k in out.data if k != "text/plain")
            shown.append((",".join(rich) or "text/plain", "" if rich else out.data.get("text/plain", "")))
    return shown


def test_the_committed_outputs_are_what_the_code_gives(run):
    committed, fresh, _ = run
    now = cells(fresh)
    assert [c.id for c in committed.cells] == list(now), "cells were added or moved since the outputs were committed"
    stale = []
    for cell in committed.cells:
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs"), f"cell {cell.id} has no committed output: run python tests/test_notebook.py"
        if VARIES in cell.metadata.get("tags", []):
            continue
        before, after = _comparable(cell), _comparable(now[cell.id])
        if len(before) != len(after) or any(k1 != k2 or not _same_text(t1, t2)
                                            for (k1, t1), (k2, t2) in zip(before, after)):
            stale.append(cell.id)
    assert not stale, f"committed outputs of cells {stale} are stale: run python tests/test_notebook.py"


if __name__ == "__main__":  # refresh the committed outputs
    import nbformat

    with tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        executed = execute(NOTEBOOK, Path(cwd))
    nbformat.write(copy.deepcopy(executed), NOTEBOOK)
    print(f"{NOTEBOOK.relative_to(ROOT)} executed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
