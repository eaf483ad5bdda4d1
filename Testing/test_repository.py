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


def test_every_readme_command_exists():
    """Each `python -m <Lib> <command>` the README shows is a command of that CLI (its --help parses)."""
    import re
    import pytest
    from BreastShapeModelLib.cli import build_parser as shape_parser
    from BreastVideoReconstructionLib.cli import build_parser as video_parser
    readme = (ROOT / "README.md").read_text()
    found = set(re.findall(r"python -m (BreastShapeModelLib|BreastVideoReconstructionLib) ([a-z][a-z-]*)", readme))
    assert len(found) >= 10
    parsers = {"BreastShapeModelLib": shape_parser(), "BreastVideoReconstructionLib": video_parser()}
    for lib, command in sorted(found):
        with pytest.raises(SystemExit) as exit_info:
            parsers[lib].parse_args([command, "--help"])
        assert exit_info.value.code == 0, (lib, command)
