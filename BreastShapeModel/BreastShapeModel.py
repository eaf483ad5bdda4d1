"""BreastShapeModel: sample the liRBSM breast shape model and load shapes as model + markups nodes.

Thin GUI over BreastShapeModelLib (Qt-free, tested with pytest): jobs run in a child process
(`PythonSlicer -m BreastShapeModelLib ...`) that reports JSON progress; the GUI polls, shows progress and can
cancel. The Fit section fits the model to a scan or point cloud guided by six landmarks placed as markups.
"""
import os

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.module_logic import (FitJob, FitRequest, ModelChoice, SampleRequest, ShapeJob,
                                              missing_packages, place_landmarks_node)
from BreastShapeModelLib.options import ScanOptions


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
        self.ui.fitButton.connect("clicked(bool)", lambda _: self.onFit())
        self.ui.placeLandmarksButton.connect("clicked(bool)", lambda _: self.onPlaceLandmarks())
        self.ui.useBundledCheckBox.connect("toggled(bool)", self.updateGUI)
        self.updateGUI()

    def ensureDependencies(self):
        """Ask once before installing what is missing: torch via the PyTorch extension, the rest with pip."""
        try:
            import torch  # noqa: F401
        except ImportError:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay("PyTorch is missing: install the PyTorch extension from the Extensions "
                                         "Manager, restart Slicer and try again.")
                return False
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                return False
        missing = missing_packages()
        if missing:
            if not slicer.util.confirmOkCancelDisplay("Breast Shape Model needs these Python packages: "
                                                      + ", ".join(missing) + ". Install them now?"):
                return False
            slicer.util.pip_install(" ".join(missing))
        return True

    def cleanup(self):
        self.timer.stop()
        if self.job:
            self.job.cleanup()

    def updateGUI(self, *_):
        custom = not self.ui.useBundledCheckBox.checked
        for w in (self.ui.checkpointPathLineEdit, self.ui.configPathLineEdit, self.ui.anchorsPathLineEdit):
            w.enabled = custom
        running = self.job is not None
        fitting = running and isinstance(self.job, FitJob)
        sampling_mean = running and not fitting and self.job.request.mean
        self.ui.meanShapeButton.text = "Cancel" if sampling_mean else "Mean shape"
        self.ui.sampleButton.text = "Cancel" if running and not fitting and not sampling_mean else "Sample"
        self.ui.fitButton.text = "Cancel" if fitting else "Fit"
        for button, mine in ((self.ui.meanShapeButton, sampling_mean), (self.ui.fitButton, fitting),
                             (self.ui.sampleButton, running and not fitting and not sampling_mean)):
            button.enabled = mine or not running
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
        if not self.ensureDependencies():
            return
        seed = self.ui.seedSpinBox.value
        request = SampleRequest(self.modelChoice(), num_samples=self.ui.numSamplesSpinBox.value,
                                seed=None if seed < 0 else seed, resolution=self.ui.resolutionSpinBox.value,
                                metrical=self.ui.metricalCheckBox.checked, mean=mean)
        self.startJob(lambda: self.logic.start(request))

    def onPlaceLandmarks(self):
        node = place_landmarks_node(slicer.mrmlScene, slicer.mrmlScene.GenerateUniqueName("Landmarks"))
        self.ui.landmarksSelector.setCurrentNode(node)
        slicer.modules.markups.logic().SetActiveList(node)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.log("Click the six landmarks on the scan in order: " + ", ".join(
            node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())))

    def onFit(self):
        if self.job is not None:
            self.job.cleanup()
            self.finish("Cancelled.")
            return
        if not self.ensureDependencies():
            return
        input_node = self.ui.fitInputSelector.currentNode()
        path = self.ui.fitInputPathLineEdit.currentPath
        if input_node is None and not path:
            slicer.util.errorDisplay("Choose an input model or a point-cloud file.")
            return
        nipples = self.ui.nippleDistanceSpinBox.value
        options = ScanOptions(latent_weight=self.ui.latentWeightSpinBox.value,
                              anchor_weight=self.ui.anchorWeightSpinBox.value, iterations=self.ui.iterationsSpinBox.value,
                              voxel_resolution=self.ui.fitResolutionSpinBox.value,
                              metrical=self.ui.fitMetricalCheckBox.checked,
                              nipple_to_nipple_dist=nipples if nipples > 0 else None)
        request = FitRequest(self.modelChoice(), input_path=path, options=options)
        self.startJob(lambda: self.logic.startFit(request, input_node, self.ui.landmarksSelector.currentNode()))

    def startJob(self, make_job):
        try:
            self.job = make_job()
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
            elif event["type"] == "warning":
                self.log("WARNING: " + event.get("message", ""))
        if self.job.job.running:
            return
        if self.job.job.returncode == 0:
            try:
                nodes = self.job.load_results(slicer.mrmlScene)
                if isinstance(self.job, FitJob):
                    r = self.job.report["residuals"]
                    self.finish(f"Fitted in {self.job.report['fit_seconds']:.0f} s: residual mean {r['mean_mm']:.2f} mm, "
                                f"95th percentile {r['p95_mm']:.2f} mm. Colours show support (distance to the input).")
                else:
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

    def startFit(self, request, input_node=None, landmarks_node=None):
        return FitJob(request, input_node=input_node, landmarks_node=landmarks_node).start()


class BreastShapeModelTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_mean_shape_job()
        self.setUp()
        self.test_fit_job()

    def test_mean_shape_job(self):
        self.delayDisplay("Meshing the mean shape in a background job")
        job = BreastShapeModelLogic().start(SampleRequest(ModelChoice(device="cpu"), resolution=64, mean=True))
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

    def test_fit_job(self):
        """Fit the bundled model to its own mean shape with landmarks placed as markups, as a user would."""
        self.delayDisplay("Fitting a scan with six landmarks in a background job")
        sample = BreastShapeModelLogic().start(SampleRequest(ModelChoice(device="cpu"), resolution=64, mean=True))
        try:
            self.assertEqual(sample.job.wait(timeout=300), 0, sample.job.error_message())
            scan, anchors = sample.load_results(slicer.mrmlScene)
        finally:
            sample.cleanup()
        landmarks = place_landmarks_node(slicer.mrmlScene)
        for i in range(6):
            p = [0.0, 0.0, 0.0]
            anchors.GetNthControlPointPositionWorld(i, p)
            landmarks.SetNthControlPointPositionWorld(i, p)
        request = FitRequest(ModelChoice(device="cpu"), input_path="",
                             options=ScanOptions(iterations=100, voxel_resolution=64))
        job = BreastShapeModelLogic().startFit(request, scan, landmarks)
        try:
            self.assertEqual(job.job.wait(timeout=600), 0, job.job.error_message())
            model, fitted = job.load_results(slicer.mrmlScene)
            self.assertIsNotNone(model.GetPolyData().GetPointData().GetArray("support"))
            self.assertEqual(fitted.GetNumberOfControlPoints(), 6)
            self.assertLess(job.report["residuals"]["mean_mm"], 5.0)
        finally:
            job.cleanup()
        self.assertFalse(os.path.exists(job.output_dir))
        self.delayDisplay("Test passed")
