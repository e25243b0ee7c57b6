"""python/examples/quickstart.py runs, and the root README shows it as it is."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "python" / "examples" / "quickstart.py"


def snippet() -> str:
    text = QUICKSTART.read_text(encoding="utf-8")
    return re.search(r"# ANCHOR: quickstart\n(.*?)# ANCHOR_END: quickstart", text, re.S).group(1)


def test_quickstart_runs():
    out = subprocess.run([sys.executable, str(QUICKSTART)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # payment-2 is delivered twice (its first answer was "lost") but charged once.
    assert sorted(line for line in lines if "charging" in line) == [
        "  charging: debit 10 EUR", "  charging: debit 20 EUR", "  charging: debit 30 EUR"]
    assert any(line.startswith("delivered") for line in lines)


def test_root_readme_shows_the_quickstart():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if "python/examples/quickstart.py" not in readme:
        pytest.skip("the root README does not show the Python quickstart yet")
    assert snippet() in readme


HTTP_PAYMENTS = ROOT / "python" / "examples" / "http_payments.py"


def test_http_payments_runs():
    """The payments service example: a retry is replayed, racing duplicates make one row, a key
    reused with another body is refused."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    out = subprocess.run([sys.executable, str(HTTP_PAYMENTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("retry: 201") and line.endswith("replayed: true") for line in lines), lines
    assert any(line.startswith("reused key: 422 urn:oncely:problem:idempotency-key-reused") for line in lines), lines
    assert lines[-1] == "done"


def test_root_readme_shows_the_http_example():
    """The README's HTTP section shows http_payments.py's service as it is (between its ANCHOR
    lines), so the README's Python HTTP example is always the tested one."""
    text = HTTP_PAYMENTS.read_text(encoding="utf-8")
    region = text.split("# ANCHOR: readme\n", 1)[1].split("# ANCHOR_END: readme", 1)[0].rstrip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python/examples/http_payments.py" in readme
    assert f"```python\n{region}\n```" in readme, f"README.md's HTTP example differs; paste:\n{region}"
