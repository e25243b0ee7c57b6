"""The hand-written stub `_native.pyi` names exactly what the native module exports."""

import ast
from pathlib import Path

import pytest

import oncely
from oncely import _native

STUB = Path(__file__).resolve().parents[1] / "oncely" / "_native.pyi"


def stub_names():
    tree = ast.parse(STUB.read_text())
    classes, names = {}, set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} | {
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign)
            }
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return classes, names


def test_stub_covers_every_export():
    classes, names = stub_names()
    exported = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert exported <= names, exported - names


def test_stub_methods_exist_and_are_complete():
    classes, _ = stub_names()
    for cls_name, members in classes.items():
        cls = getattr(_native, cls_name)
        public = {
            n for n in dir(cls)
            if not n.startswith("_") and n not in dir(Exception) and not (issubclass(cls, BaseException) and n == "code")
        }
        declared = {m for m in members if not m.startswith("_")}
        assert public <= declared | {"code"}, (cls_name, public - declared)
        for m in declared:
            assert hasattr(cls, m), (cls_name, m)


def test_py_typed_ships():
    assert (Path(oncely.__file__).parent / "py.typed").exists()
    assert (Path(oncely.__file__).parent / "_native.pyi").exists()


def test_classes_live_in_oncely_native():
    for name in ("Ticket", "Delivery", "Store", "ManualClock", "OncelyError", "BeginResult"):
        assert getattr(_native, name).__module__ == "oncely._native"


def test_mypy_stubtest_agrees_with_the_runtime(tmp_path):
    """`mypy.stubtest` compares the stub with the module's real signatures."""
    pytest.importorskip("mypy", reason="mypy is not installed (python/run-tests.sh installs it)")
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "oncely._native"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
