"""The Python examples of CONTRIBUTING.md run as written (a plugin: two sharing schemes with the
scheme contract checked rule by rule, a metric, their use), and plugins need only `restore.api`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.conftest import REPO


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "CONTRIBUTING.md").read_text(), flags=re.S)


def test_contributing_examples_run():
    blocks = python_blocks()
    assert len(blocks) >= 9
    result = subprocess.run([sys.executable, "-c", "\n\n".join(blocks)], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "{'mae':" in result.stdout


def restore_imports(code: str) -> list[str]:
    """The `restore` modules `code` imports (``restore.api``, ``restore.metrics``, ...)."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if node.module == "restore"]
    return [name for name in found if name == "restore" or name.startswith("restore.")]


def test_plugins_examples_and_contributing_import_nothing_from_restore_but_the_api():
    sources = {str(path.relative_to(REPO)): path.read_text()
               for folder in ("plugins", "examples") for path in sorted((REPO / folder).rglob("*.py"))}
    sources |= {f"CONTRIBUTING.md, Python block {i + 1}": block for i, block in enumerate(python_blocks())}
    assert any("plugins/restore_ps" in where for where in sources) and "examples/restore-templates" in " ".join(
        sources)
    private = {where: names for where, code in sources.items()
               if (names := [n for n in restore_imports(code) if n not in ("restore", "restore.api")])}
    assert private == {}, f"imports outside restore.api: {private}"
    assert restore_imports("from restore.metrics import MetricSet\nimport restore.api") == [
        "restore.metrics", "restore.api"]  # the check itself sees both forms
