"""Static checks of the Slicer extension layout: widget names, CMake file lists, Qt-free Libs."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODULES = ["BreastShapeModel", "BreastVideoReconstruction"]


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_used_exists_in_ui(module):
    code = (ROOT / module / f"{module}.py").read_text()
    ui = (ROOT / module / "Resources" / "UI" / f"{module}.ui").read_text()
    declared = set(re.findall(r'name="(\w+)"', ui))
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert used, "the module uses no widgets?"
    assert used <= declared, f"missing in .ui: {sorted(used - declared)}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_lib_file_and_resource(module):
    cmake = (ROOT / module / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", module)
    lib = ROOT / module / f"{module}Lib"
    for path in sorted(lib.rglob("*.py")) + sorted(lib.rglob("*.yaml")):
        rel = path.relative_to(ROOT / module).as_posix()
        assert rel in cmake, f"{rel} not listed in {module}/CMakeLists.txt"
    for res in (f"Resources/Icons/{module}.png", f"Resources/UI/{module}.ui"):
        assert (ROOT / module / res).is_file() and res in cmake


def test_extension_cmake():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in cmake
    for module in MODULES:
        assert f"add_subdirectory({module})" in cmake
    assert (ROOT / "Resources" / "Icons" / "SlicerBreastShape.png").is_file()
    assert '"BreastShapeModel"' in (ROOT / "BreastVideoReconstruction" / "BreastVideoReconstruction.py").read_text()


def test_libs_do_not_import_qt():
    pattern = re.compile(r"^\s*(import|from)\s+(qt|ctk|slicer\.ScriptedLoadableModule|slicer\.app)\b", re.M)
    for module in MODULES:
        for path in (ROOT / module / f"{module}Lib").rglob("*.py"):
            assert not pattern.search(path.read_text()), f"{path} imports Qt/Slicer GUI"
