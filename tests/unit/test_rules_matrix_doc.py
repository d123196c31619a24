"""docs/RULES_MATRIX.md is what scripts/rules_matrix.py renders from the emulator test's ACCESS table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import rules_matrix
from tests.emulator.test_rules import ACCESS, ROLES

ROOT = Path(__file__).resolve().parents[2]


def test_committed_doc_matches_the_generated_one() -> None:
    committed = (ROOT / "docs" / "RULES_MATRIX.md").read_text(encoding="utf-8")
    assert committed == rules_matrix.render(), "docs/RULES_MATRIX.md is stale: run python scripts/rules_matrix.py"


def test_every_asserted_cell_is_in_the_matrix() -> None:
    rows = {
        (cells[0].strip("`"), cells[1]): cells[2:]
        for line in rules_matrix.render().splitlines()
        if line.startswith("| `") and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 2 + len(ROLES)
    }
    assert len(rows) == sum(len(ops) for ops in ACCESS.values())
    for collection, ops in ACCESS.items():
        for op, allowed in ops.items():
            expected = [rules_matrix.ALLOW if role in allowed else rules_matrix.DENY for role in ROLES]
            assert rows[(collection, op)] == expected, (collection, op)


def test_every_role_has_a_legend() -> None:
    text = rules_matrix.render()
    for role in ROLES:
        assert f"| `{role}` | {rules_matrix.ROLE_MEANING[role]} |" in text


def test_unknown_role_or_op_is_refused() -> None:
    with pytest.raises(ValueError, match="legend"):
        rules_matrix.render(ACCESS, (*ROLES, "superuser"))
    with pytest.raises(ValueError, match="operations"):
        rules_matrix.render({"things": {"patch": frozenset()}}, ROLES)
    with pytest.raises(ValueError, match="not in ROLES"):
        rules_matrix.render({"things": {"get": frozenset({"root"})}}, ROLES)


def test_check_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "RULES_MATRIX.md"
    assert rules_matrix.main(["--check", "--output", str(out)]) == 1  # missing
    assert rules_matrix.main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == rules_matrix.render()
    assert rules_matrix.main(["--check", "--output", str(out)]) == 0
    out.write_text(rules_matrix.render() + "\nhand edit\n", encoding="utf-8")
    assert rules_matrix.main(["--check", "--output", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_script_runs_standalone_without_starting_anything() -> None:
    """Importing the emulator test module (requests, scripts.emulator) must not start the emulator."""
    code = (
        "import subprocess\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError(f'started a process: {args!r}')\n"
        "subprocess.Popen = refuse\n"
        "import runpy, sys\n"
        "sys.argv = ['rules_matrix.py', '--check']\n"
        "runpy.run_path('scripts/rules_matrix.py', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
