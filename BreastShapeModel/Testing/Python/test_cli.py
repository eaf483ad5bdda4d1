"""The sampling command line, as a user runs it: outputs that parse, and one clear line for bad input."""
import json

import numpy as np
import pytest
import trimesh

from BreastShapeModelLib.config import DEFAULT_CONFIG_PATH
from BreastShapeModelLib.landmarks import LANDMARK_NAMES

LIB = "BreastShapeModelLib"


def test_sample_official_format_with_config_and_anchors(cli, reference, tmp_path):
    out = tmp_path / "out"
    r = cli(LIB, "sample", 2, "--output_dir", out, "--device", "cpu", "--voxel_resolution", 48,
            "--ckpt", reference / "official_format_random.pth", "--config", DEFAULT_CONFIG_PATH,
            "--anchors", reference / "lirbsm_average_anchors.npy", "--seed", 3, "--progress", "none")
    assert r.returncode == 0, r.stderr
    for i in range(2):
        mesh = trimesh.load(out / f"sample_{i}.ply")
        assert len(mesh.faces) > 100
        rows = np.loadtxt(out / f"sample_{i}_anchors.csv", delimiter=",")
        assert rows.shape == (6, 3)
        doc = json.loads((out / f"sample_{i}_anchors.mrk.json").read_text())
        labels = [p["label"] for p in doc["markups"][0]["controlPoints"]]
        assert labels == list(LANDMARK_NAMES)
        assert np.load(out / f"sample_{i}_code.npy").shape == (576,)
    info = json.loads((out / "sample_info.json").read_text())
    assert info["seed"] == 3 and len(info["shapes"]) == 2


def test_sample_is_reproducible_and_metrical(cli, geo_ckpt, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, extra in ((a, []), (b, []), (c, ["--metrical"])):
        r = cli(LIB, "sample", 1, "--output_dir", d, "--ckpt", geo_ckpt, "--voxel_resolution", 40, "--seed", 9,
                "--device", "cpu", "--progress", "none", *extra)
        assert r.returncode == 0, r.stderr
    va = trimesh.load(a / "sample_0.ply").vertices
    np.testing.assert_allclose(va, trimesh.load(b / "sample_0.ply").vertices)
    info = json.loads((c / "sample_info.json").read_text())
    np.testing.assert_allclose(trimesh.load(c / "sample_0.ply").vertices, va * info["mm_per_unit"], rtol=1e-5)
    assert info["units"] == "mm" and 200 < info["mm_per_unit"] < 400


def test_mean_interpolate_info_and_json_progress(cli, geo_ckpt, tmp_path):
    r = cli(LIB, "mean", "--output_dir", tmp_path, "--ckpt", geo_ckpt, "--voxel_resolution", 32, "--progress", "json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert {e["type"] for e in events} >= {"progress", "result"}
    assert events[-1]["type"] == "result" and any(f.endswith("mean_shape.ply") for f in events[-1]["files"])
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    r = cli(LIB, "interpolate", "--steps", 3, "--output_dir", tmp_path / "i", "--ckpt", geo_ckpt,
            "--voxel_resolution", 32, "--seed", 1, "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "i").glob("*.ply")) == ["interp_0.ply", "interp_1.ply", "interp_2.ply"]
    r = cli(LIB, "info", "--ckpt", geo_ckpt)
    assert r.returncode == 0 and json.loads(r.stdout)["latent_dim"] == 576


@pytest.mark.parametrize("case", ["missing", "corrupt", "config_key", "five_anchors", "bad_count"])
def test_bad_input_one_line_exit_2_and_earlier_outputs_kept(cli, reference, tmp_path, case):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "sample_0.ply"
    keep.write_text("earlier result")
    ckpt = reference / "official_format_random.pth"
    extra = []
    if case == "missing":
        ckpt = tmp_path / "nope.pth"
    elif case == "corrupt":
        ckpt = tmp_path / "corrupt.pth"
        ckpt.write_bytes(b"\x00garbage" * 100)
    elif case == "config_key":
        bad = tmp_path / "bad.yaml"
        bad.write_text(DEFAULT_CONFIG_PATH.read_text().replace("hidden_dim: 200", "hidden_size: 200"))
        extra = ["--config", bad]
    elif case == "five_anchors":
        five = tmp_path / "five.npy"
        np.save(five, np.load(reference / "lirbsm_average_anchors.npy")[:5])
        extra = ["--anchors", five]
    n = "0" if case == "bad_count" else "1"
    r = cli(LIB, "sample", n, "--output_dir", out, "--ckpt", ckpt, "--voxel_resolution", 32, *extra)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert keep.read_text() == "earlier result"


def test_help_documents_options(cli):
    r = cli(LIB, "sample", "--help")
    for option in ("--output_dir", "--device", "--voxel_resolution", "--chunk_size", "--ckpt", "--config",
                   "--anchors", "--seed", "--metrical", "--progress"):
        assert option in r.stdout


def test_progress_tells_the_truth(cli, geo_ckpt, tmp_path):
    """Whole-number totals print as whole numbers, fractional stages as percentages, the elapsed time moves
    while nothing reports progress, and the closing summary is printed even with --progress none."""
    import io
    import time
    from BreastShapeModelLib.progress import Progress
    stream = io.StringIO()
    p = Progress("bar", stream=stream)
    assert p.tick_seconds == 10.0                                  # not a terminal: a short log
    p.tick_seconds = 0.5
    with p.stage("fit", total=1000.0, unit="it") as update:
        update(500)
    with p.stage("sfm: features", total=1.0) as update:
        time.sleep(2.3)                                            # a library that says nothing for a while
    text = stream.getvalue()
    assert "500/1000" in text and "1e+03" not in text and "1000.0" not in text
    silent = [t for t in text.split("\r") if t.startswith("sfm: features")]
    assert len(silent) >= 4 and "00:01" in "".join(silent[:-1])   # the silent stage's clock moved meanwhile
    r = cli(LIB, "mean", "--ckpt", geo_ckpt, "--output_dir", tmp_path / "m", "--voxel_resolution", 32,
            "--progress", "none")
    assert r.returncode == 0 and "wrote 1 shape(s)" in r.stderr and r.stdout == ""
