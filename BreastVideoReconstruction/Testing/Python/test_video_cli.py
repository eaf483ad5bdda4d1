"""The video pipeline's command-line entry point exists and says honestly what it offers."""


def test_entry_point_reports_no_commands_yet(cli):
    r = cli("BreastVideoReconstructionLib", "--help")
    assert r.returncode == 0 and "Video to metric 3D breast surface" in r.stdout
    r = cli("BreastVideoReconstructionLib")
    assert r.returncode == 2 and r.stderr.startswith("error:")
