"""Repository-level promises: the README's two commands exist and CI runs the README's test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash .ci/run" in readme
    assert (ROOT / "scripts" / "demo.sh").is_file()


def test_ci_installs_cpu_torch_first_and_runs_pytest():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("torch==2.13.0") < ci.index('-e ".[test,video]"')
    assert "python -m pytest -q" in ci and "python -m pytest -q" in (ROOT / "README.md").read_text()
