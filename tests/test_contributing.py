"""The Python examples of CONTRIBUTING.md run as written (a plugin: sharing layer, metric, use)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_contributing_examples_run():
    text = (REPO / "CONTRIBUTING.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    result = subprocess.run([sys.executable, "-c", "\n\n".join(blocks)], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "{'mae':" in result.stdout
