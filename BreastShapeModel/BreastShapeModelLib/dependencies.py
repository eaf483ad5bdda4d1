"""The one dependency installer of both Slicer modules, without Qt: what is missing and how to install it.

The requirement specifications are the ones in pyproject.toml (a test keeps the two equal). The module widgets
pass Slicer's dialogs and installers in (`ask`, `pip_install`, `install_torch`), so the order and the questions
are tested here with plain callables.
"""
from __future__ import annotations

import importlib.util
import platform
from typing import Callable

MODEL_REQUIREMENTS = {       # import name -> pip requirement (BreastShapeModelLib)
    "numpy": "numpy>=1.23", "scipy": "scipy>=1.10", "skimage": "scikit-image>=0.21", "trimesh": "trimesh>=4.0",
    "h5py": "h5py>=3.8", "yaml": "pyyaml>=6.0", "tqdm": "tqdm>=4.60", "PIL": "pillow>=9.0", "rtree": "rtree>=1.0",
    "vtk": "vtk>=9.3", "potpourri3d": "potpourri3d>=1.0", "matplotlib": "matplotlib>=3.6",
}
if platform.machine() in ("x86_64", "AMD64"):    # wheels for x86-64 only; elsewhere trimesh casts rays with rtree
    # trimesh casts rays with Embree when it is there: the measurements' radius maps 100x faster, the same hits
    MODEL_REQUIREMENTS["embreex"] = "embreex>=2.17; platform_machine == 'x86_64' or platform_machine == 'AMD64'"
VIDEO_REQUIREMENTS = {       # what the video pipeline needs beyond the model's
    "cv2": "opencv-python-headless>=4.8", "pycolmap": "pycolmap>=3.11", "av": "av>=12",
}
GROUPS = {"model": MODEL_REQUIREMENTS, "video": {**MODEL_REQUIREMENTS, **VIDEO_REQUIREMENTS}}


def missing(group: str = "model") -> list[str]:
    """pip requirements of `group` ('model' or 'video') whose module this interpreter cannot import (torch apart)."""
    return [spec for module, spec in GROUPS[group].items() if importlib.util.find_spec(module) is None]


def torch_missing() -> bool:
    return importlib.util.find_spec("torch") is None


def ensure(group: str, ask: Callable[[str], bool], pip_install: Callable[[list[str]], object],
           install_torch: Callable[[], bool], error: Callable[[str], object]) -> bool:
    """Install what `group` lacks, asking first; True when everything is there afterwards.

    torch comes from `install_torch` (in Slicer: the PyTorch extension, which picks the right CUDA/CPU build); the
    rest from `pip_install` with the pinned requirements. Nothing is installed without a yes."""
    if torch_missing():
        if not install_torch():
            error("PyTorch is needed: install the PyTorch extension from the Extensions Manager, restart Slicer "
                  "and try again.")
            return False
    todo = missing(group)
    if not todo:
        return True
    if not ask("Breast Shape needs these Python packages: " + ", ".join(todo) + ". Install them now?"):
        return False
    pip_install(todo)                      # a list: no shell, no quoting of '>='
    importlib.invalidate_caches()
    still = missing(group)
    if still:
        error("Installing failed for: " + ", ".join(still) + " (see the Python console).")
        return False
    return True


def torch_from_extension() -> bool:
    """Slicer's PyTorch extension installs torch (it asks first and picks the CPU or CUDA build); False where the
    extension is absent or the user declined."""
    try:
        import PyTorchUtils
    except ImportError:
        return False
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is not None


def ensure_in_slicer(group: str) -> bool:
    """`ensure` with Slicer's dialogs and installers: what both module widgets call before starting a job."""
    import slicer
    return ensure(group, slicer.util.confirmOkCancelDisplay, slicer.util.pip_install, torch_from_extension,
                  slicer.util.errorDisplay)
