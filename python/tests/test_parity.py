"""The Python column of the API parity table (tests/parity/api.tsv): every name there exists.

Each cell names one or more members (``Type.member``, several separated by `` | ``) of the
classes the ``oncely`` package exports; ``module.name`` is a module attribute. ``__new__`` is a
constructor: the class must define its own. A row marked ``known_gap`` in its sixth column is
skipped (and must say ``-`` only in the languages that lack it); any other empty or ``-`` cell
fails.
"""

from pathlib import Path

import pytest

import oncely

TABLE = Path(__file__).resolve().parents[2] / "tests" / "parity" / "api.tsv"


def rows():
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    assert header == ["operation", "rust", "python", "node", "kotlin"], header
    out = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        assert len(cells) in (5, 6), f"api.tsv line {n}: {len(cells)} cells"
        assert len(cells) == 5 or cells[5] == "known_gap", f"api.tsv line {n}: 6th cell must be known_gap"
        out.append((n, cells))
    return out


ROWS = rows()


def names(cell):
    return [n.strip() for n in cell.split("|")]


def exists(name):
    owner, _, member = name.rpartition(".")
    if owner == "module":
        return hasattr(oncely, member)
    cls = getattr(oncely, owner, None)
    if cls is None:
        return False
    if member == "__new__":
        return callable(cls) and cls.__new__ is not object.__new__
    return hasattr(cls, member)


def test_the_table_has_rows():
    assert len(ROWS) > 50


@pytest.mark.parametrize("line,cells", ROWS, ids=[c[0] for _, c in ROWS])
def test_python_names_exist(line, cells):
    cell = cells[2]
    if len(cells) == 6 and cell == "-":
        pytest.skip(f"known gap: {cells[0]}")
    assert cell and cell != "-", f"api.tsv line {line}: {cells[0]} has no Python name"
    missing = [n for n in names(cell) if not exists(n)]
    assert not missing, f"api.tsv line {line}: {cells[0]}: not in oncely: {missing}"
