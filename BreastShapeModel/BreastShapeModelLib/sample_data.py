"""Sample data for trying every button without one's own data: a synthetic scan with its six landmarks and a small
synthetic phone video with its landmark file, made by the project's own generators (`make_sample_data`) and
shipped small in the modules' Resources/SampleData. The scan is written as a scanner export is read by Slicer
("lps" frame), so it loads standing in Slicer like a real scan would."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULES_ROOT = Path(__file__).resolve().parents[2]
SCAN_DIR = MODULES_ROOT / "BreastShapeModel" / "Resources" / "SampleData"                  # the source tree
VIDEO_DIR = MODULES_ROOT / "BreastVideoReconstruction" / "Resources" / "SampleData"
INSTALLED_DIR = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"       # an installed extension
SCAN = "SyntheticTorsoScan.ply"
SCAN_LANDMARKS = "SyntheticTorsoScan_landmarks.mrk.json"
VIDEO = "SyntheticTorsoVideo.mp4"
VIDEO_LANDMARKS = "SyntheticTorsoVideo_landmarks.json"


@dataclass
class SampleSource:
    """One entry of Slicer's Sample Data module: files loaded together under `name`."""
    name: str
    files: list[Path]
    node_names: list[str]
    load_types: list[str | None]       # Slicer file types (ModelFile, MarkupsFile); None: not loaded, just fetched


def sources(scan_dir: Path | None = None, video_dir: Path | None = None) -> list[SampleSource]:
    """The two sample-data entries (default folders: the source tree's, else the installed extension's, where
    both modules share one Resources folder)."""
    scan_dir = Path(scan_dir or (SCAN_DIR if (SCAN_DIR / SCAN).is_file() else INSTALLED_DIR))
    video_dir = Path(video_dir or (VIDEO_DIR if (VIDEO_DIR / VIDEO).is_file() else INSTALLED_DIR))
    return [SampleSource("Synthetic torso scan", [scan_dir / SCAN, scan_dir / SCAN_LANDMARKS],
                         ["SyntheticTorsoScan", "SyntheticTorsoScan_landmarks"], ["ModelFile", "MarkupsFile"]),
            SampleSource("Synthetic torso video", [video_dir / VIDEO, video_dir / VIDEO_LANDMARKS],
                         ["SyntheticTorsoVideo", "SyntheticTorsoVideo_landmarks"], [None, None])]


def register(sample_data_logic, source_list: list[SampleSource], category: str = "Breast Shape",
             thumbnail: str | None = None) -> int:
    """Register the sources with Slicer's SampleData (`SampleData.SampleDataLogic`): local files as file:// URIs,
    so nothing is downloaded; returns how many were registered (those whose files exist)."""
    count = 0
    for source in source_list:
        if not all(f.is_file() for f in source.files):
            continue
        load = [t is not None for t in source.load_types]
        sample_data_logic.registerCustomSampleDataSource(
            category=category, sampleName=source.name, uris=[f.resolve().as_uri() for f in source.files],
            fileNames=[f.name for f in source.files], nodeNames=source.node_names, thumbnailFileName=thumbnail,
            loadFileType=[t or "" for t in source.load_types], loadFiles=load)
        count += 1
    return count


def register_in_slicer(module_path: str, which: int) -> int:
    """One module's entry (0: the scan, 1: the video) in Slicer's Sample Data module, from the module's own
    Resources/SampleData (both modules share that folder once installed)."""
    import SampleData
    folder = Path(module_path).parent / "Resources" / "SampleData"
    return register(SampleData.SampleDataLogic, [sources(folder, folder)[which]])


def make_sample_data(seed: int = 11, video_seed: int = 3, spacing_mm: float = 6.0) -> list[Path]:
    """Regenerate the shipped files with our own commands (deterministic for given seeds)."""
    import trimesh
    from .landmarks import read_landmarks, write_anchor_files
    from .mesh_io import write_mesh
    from .mrml_io import from_ras, to_ras
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = [sys.executable, "-m"]
        subprocess.run(run + ["BreastShapeModelLib", "synth", "1", "--output_dir", str(tmp / "scan"), "--seed",
                              str(seed), "--spacing", str(spacing_mm), "--progress", "none"], check=True)
        subprocess.run(run + ["BreastVideoReconstructionLib", "synth-video", "--output_dir", str(tmp / "video"),
                              "--seed", str(video_seed), "--width", "640", "--height", "360", "--fps", "10",
                              "--duration", "3", "--progress", "none"], check=True)
        mesh = trimesh.load(tmp / "scan" / "torso_0000.ply", process=False)
        lms = read_landmarks(tmp / "scan" / "landmarks" / "torso_0000.txt")
        mesh.vertices = from_ras(to_ras(mesh.vertices, "model"), "lps")        # as Slicer reads a scan: upright
        SCAN_DIR.mkdir(parents=True, exist_ok=True)
        VIDEO_DIR.mkdir(parents=True, exist_ok=True)
        write_mesh(mesh, SCAN_DIR / SCAN)
        write_anchor_files(from_ras(to_ras(lms, "model"), "lps"), SCAN_DIR / SCAN_LANDMARKS.replace(".mrk.json", ""),
                           units="mm")
        (SCAN_DIR / SCAN_LANDMARKS.replace(".mrk.json", ".csv")).unlink(missing_ok=True)
        shutil.copyfile(tmp / "video" / "video.mp4", VIDEO_DIR / VIDEO)
        text = (tmp / "video" / "landmarks.json").read_text(encoding="utf-8").replace('"video.mp4"', f'"{VIDEO}"')
        (VIDEO_DIR / VIDEO_LANDMARKS).write_text(text, encoding="utf-8")
    return [f for s in sources() for f in s.files]


if __name__ == "__main__":
    for path in make_sample_data():
        print(path, path.stat().st_size)
