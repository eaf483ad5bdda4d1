"""BreastShapeModel: sample the liRBSM breast shape model and load shapes as model + markups nodes.

Thin GUI over BreastShapeModelLib (Qt-free, tested with pytest): jobs run in a child process
(`PythonSlicer -m BreastShapeModelLib ...`) that reports JSON progress; the GUI polls, shows progress and can
cancel. Fitting to scans follows in the Fit section.
"""
import os

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.module_logic import ModelChoice, SampleRequest, ShapeJob


class BreastShapeModel(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "Breast Shape Model"
        parent.categories = ["Breast Shape"]
        parent.dependencies = []
        parent.contributors = ["SlicerBreastShape developers"]
        parent.helpText = (
            "Sample the liRBSM neural parametric breast shape model (bundled model, or an official liRBSM "
            "checkpoint with its config and average anchors) and load shapes with their six anatomical anchors "
            "(sternal notch, belly button, left/right nipple, left/right coracoid). Heavy work runs in a "
            "background process: Slicer stays responsive and the job can be cancelled.")
        parent.acknowledgementText = (
            "Method: Weiherer et al., 'Learning Neural Parametric 3D Breast Shape Models for Metrical Surface "
            "Reconstruction From Monocular RGB Videos' (liRBSM).")


class BreastShapeModelWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/BreastShapeModel.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastShapeModelLogic()
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.meanShapeButton.connect("clicked(bool)", lambda _: self.onRun(mean=True))
        self.ui.sampleButton.connect("clicked(bool)", lambda _: self.onRun(mean=False))
        self.ui.useBundledCheckBox.connect("toggled(bool)", self.updateGUI)
        self.updateGUI()

    def cleanup(self):
        self.timer.stop()
        if self.job:
            self.job.cleanup()

    def updateGUI(self, *_):
        custom = not self.ui.useBundledCheckBox.checked
        for w in (self.ui.checkpointPathLineEdit, self.ui.configPathLineEdit, self.ui.anchorsPathLineEdit):
            w.enabled = custom
        running = self.job is not None
        self.ui.meanShapeButton.text = "Cancel" if running and self.job.request.mean else "Mean shape"
        self.ui.sampleButton.text = "Cancel" if running and not self.job.request.mean else "Sample"
        self.ui.progressBar.visible = running

    def modelChoice(self):
        if self.ui.useBundledCheckBox.checked:
            return ModelChoice()
        return ModelChoice(self.ui.checkpointPathLineEdit.currentPath or None,
                           self.ui.configPathLineEdit.currentPath or None,
                           self.ui.anchorsPathLineEdit.currentPath or None)

    def onRun(self, mean):
        if self.job is not None:                      # the button reads "Cancel" while a job runs
            self.job.cleanup()
            self.finish("Cancelled.")
            return
        seed = self.ui.seedSpinBox.value
        request = SampleRequest(self.modelChoice(), num_samples=self.ui.numSamplesSpinBox.value,
                                seed=None if seed < 0 else seed, resolution=self.ui.resolutionSpinBox.value,
                                metrical=self.ui.metricalCheckBox.checked, mean=mean)
        try:
            self.job = self.logic.start(request)
        except UserError as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.ui.progressBar.value = 0
        self.log("Started: " + " ".join(self.job.job.args[1:]))
        self.timer.start()
        self.updateGUI()

    def onPoll(self):
        for event in self.job.job.poll():
            if event["type"] == "progress":
                self.ui.progressBar.value = int(100 * event.get("fraction", 0))
                self.ui.statusLabel.text = event.get("message", "")
            elif event["type"] in ("log", "error"):
                self.log(event.get("message", ""))
        if self.job.job.running:
            return
        if self.job.job.returncode == 0:
            try:
                nodes = self.job.load_results(slicer.mrmlScene)
                self.finish(f"Loaded {len(nodes) // 2} shape(s).")
            except UserError as exc:
                self.finish(f"Failed: {exc}")
        else:
            self.finish(f"Failed: {self.job.job.error_message()}")

    def finish(self, message):
        self.timer.stop()
        if self.job:
            self.job.cleanup()
        self.job = None
        self.ui.statusLabel.text = message
        self.log(message)
        self.updateGUI()

    def log(self, message):
        self.ui.logTextEdit.appendPlainText(message)


class BreastShapeModelLogic(ScriptedLoadableModuleLogic):
    """Glue only: the behaviour lives in BreastShapeModelLib.module_logic (tested without Qt)."""

    def start(self, request):
        return ShapeJob(request).start()


class BreastShapeModelTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_mean_shape_job()

    def test_mean_shape_job(self):
        self.delayDisplay("Meshing the mean shape in a background job")
        job = BreastShapeModelLogic().start(SampleRequest(ModelChoice(), resolution=64, mean=True, device="cpu"))
        try:
            code = job.job.wait(timeout=300)
            self.assertEqual(code, 0, job.job.error_message())
            nodes = job.load_results(slicer.mrmlScene)
            self.assertEqual(len(nodes), 2)
            self.assertGreater(nodes[0].GetPolyData().GetNumberOfPoints(), 1000)
            self.assertEqual(nodes[1].GetNumberOfControlPoints(), 6)
        finally:
            job.cleanup()
        self.assertFalse(os.path.exists(job.output_dir))
        self.delayDisplay("Test passed")
