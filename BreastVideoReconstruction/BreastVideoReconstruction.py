"""BreastVideoReconstruction: phone video of a standing patient -> metric 3D breast surface + measurements.

Thin GUI over BreastVideoReconstructionLib (Qt-free): the pipeline runs as a child process
(`PythonSlicer -m BreastVideoReconstructionLib run ... --progress json`) so Slicer never freezes; Cancel kills
it and keeps the finished steps, so running again resumes.
"""
import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.module_logic import ModelChoice
from BreastVideoReconstructionLib.module_logic import VideoJob, VideoRequest, missing_video_packages
from BreastVideoReconstructionLib.options import VideoOptions


class BreastVideoReconstruction(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "Breast Video Reconstruction"
        parent.categories = ["Breast Shape"]
        parent.dependencies = ["BreastShapeModel"]
        parent.contributors = ["SlicerBreastShape developers"]
        parent.helpText = (
            "Reconstruct a metric 3D breast surface from a phone video: frames, Structure-from-Motion, six "
            "landmarks on one frame, alignment and fitting of the liRBSM shape model (BreastShapeModel module).")
        parent.acknowledgementText = (
            "Method: Weiherer et al., 'Learning Neural Parametric 3D Breast Shape Models for Metrical Surface "
            "Reconstruction From Monocular RGB Videos' (liRBSM).")


class BreastVideoReconstructionWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/BreastVideoReconstruction.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastVideoReconstructionLogic()
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setInterval(250)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.runButton.connect("clicked(bool)", lambda _: self.onRun())
        self.ui.videoPathLineEdit.connect("currentPathChanged(QString)", self.onVideoChanged)
        self.ui.progressBar.visible = False

    def cleanup(self):
        self.timer.stop()
        if self.job:
            self.job.cleanup()

    def onVideoChanged(self, path):
        if path and not self.ui.outputPathLineEdit.currentPath:
            import os
            self.ui.outputPathLineEdit.currentPath = os.path.splitext(path)[0] + "_breast"

    def onRun(self):
        if self.job is not None:                      # the button reads "Cancel" while the pipeline runs
            self.job.cleanup()
            self.finish("Cancelled; finished steps are kept, Reconstruct resumes.")
            return
        from BreastShapeModel import BreastShapeModelWidget
        if not BreastShapeModelWidget.ensureDependencies(self):      # torch and the shape-model packages
            return
        missing = missing_video_packages()
        if missing:
            if not slicer.util.confirmOkCancelDisplay("The video pipeline needs these Python packages: "
                                                      + ", ".join(missing) + ". Install them now?"):
                return
            slicer.util.pip_install(" ".join(missing))
        nipples = self.ui.nippleDistanceSpinBox.value
        options = VideoOptions()
        options.frames.num_frames = self.ui.framesSpinBox.value
        options.fit.nipple_to_nipple_dist = nipples if nipples > 0 else None
        options.fit.iterations = self.ui.iterationsSpinBox.value
        options.fit.voxel_resolution = self.ui.resolutionSpinBox.value
        options.colour.colorize = self.ui.colorizeCheckBox.checked
        options.colour.remove_invisible = self.ui.removeInvisibleCheckBox.checked
        options.model = ModelChoice(self.ui.checkpointPathLineEdit.currentPath or None)
        request = VideoRequest(self.ui.videoPathLineEdit.currentPath, self.ui.landmarksPathLineEdit.currentPath,
                               self.ui.outputPathLineEdit.currentPath, options, self.ui.forceCheckBox.checked)
        try:
            self.job = self.logic.start(request)
        except UserError as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.ui.runButton.text = "Cancel"
        self.ui.progressBar.visible = True
        self.ui.progressBar.value = 0
        self.log("Started: " + " ".join(self.job.job.args[1:]))
        self.timer.start()

    def onPoll(self):
        for event in self.job.job.poll():
            if event["type"] == "progress":
                self.ui.progressBar.value = int(100 * event.get("fraction", 0))
                self.ui.statusLabel.text = f"{event.get('stage', '')}: {event.get('message', '')}"
            elif event["type"] == "step":
                self.log(f"{event['name']}: {event['status']}" + (f" ({event['seconds']:.0f} s)" if "seconds" in event else ""))
            elif event["type"] in ("log", "error"):
                self.log(event.get("message", ""))
            elif event["type"] == "warning":
                self.log("WARNING: " + event.get("message", ""))
        if self.job.job.running:
            return
        if self.job.job.returncode == 0:
            try:
                self.job.load_results(slicer.mrmlScene)
                self.finish(self.job.summary())
            except UserError as exc:
                self.finish(f"Failed: {exc}")
        else:
            self.finish(f"Failed: {self.job.job.error_message()}")

    def finish(self, message):
        self.timer.stop()
        if self.job:
            self.job.cleanup()
        self.job = None
        self.ui.runButton.text = "Reconstruct"
        self.ui.progressBar.visible = False
        self.ui.statusLabel.text = message.splitlines()[0] if message else ""
        self.log(message)

    def log(self, message):
        self.ui.logTextEdit.appendPlainText(message)


class BreastVideoReconstructionLogic(ScriptedLoadableModuleLogic):
    """Glue only: the behaviour lives in BreastVideoReconstructionLib.module_logic (tested without Qt)."""

    def start(self, request):
        return VideoJob(request).start()


class BreastVideoReconstructionTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear(0)
        self.test_synthetic_video()

    def test_synthetic_video(self):
        """Render a small synthetic video, run the pipeline as the module does, load the surface."""
        import subprocess
        import sys
        import tempfile
        from pathlib import Path
        work = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, "-m", "BreastVideoReconstructionLib", "synth-video", "--output_dir", str(work),
                        "--seed", "3", "--width", "640", "--height", "360", "--fps", "10", "--duration", "3",
                        "--progress", "none"], check=True)
        options = VideoOptions()
        options.frames.num_frames, options.fit.iterations, options.fit.voxel_resolution = 24, 300, 128
        job = self.logic_start(VideoRequest(str(work / "video.mp4"), str(work / "landmarks.json"), str(work / "out"),
                                            options))
        self.assertEqual(job.job.wait(900), 0)
        nodes = job.load_results(slicer.mrmlScene)
        self.assertGreater(nodes[0].GetPolyData().GetNumberOfPoints(), 1000)
        self.delayDisplay("Test passed")

    def logic_start(self, request):
        return BreastVideoReconstructionLogic().start(request)
