"""BreastShapeModel: sample the liRBSM breast shape model and load shapes as model + markups nodes.

Thin GUI over BreastShapeModelLib (Qt-free, tested with pytest): jobs run in a child process
(`PythonSlicer -m BreastShapeModelLib ...`) that reports JSON progress; the GUI polls, shows progress and can
cancel. The Fit section fits the model to a scan or point cloud guided by six landmarks placed as markups; Measure
gives footprints (editable curves), chest wall, volumes, tape distances and a table; Compare colours the change
between two visits.
"""
import os

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from BreastShapeModelLib.dependencies import ensure_in_slicer
from BreastShapeModelLib.job_control import JobControl, widget_callbacks
from BreastShapeModelLib.measure_logic import CompareJob, MeasureJob
from BreastShapeModelLib.module_logic import (FitJob, FitRequest, ModelChoice, SampleRequest, ShapeJob,
                                              place_landmarks_node)
from BreastShapeModelLib.parameters import get, get_node, parameter_node, put, put_node
from BreastShapeModelLib.sample_data import register_in_slicer
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
            "(sternal notch, belly button, left/right nipple, left/right coracoid); fit it to a scan (with six "
            "landmarks, or without: the torso is then found by its shape and the landmarks found wait on the scan "
            "to drag and accept with a second Fit); measure a surface (footprints as "
            "editable curves, chest wall, volume per side, tape distances, a table with 90 % intervals; "
            "the chest wall is predicted from the skin when the torso is like the model's training torsos, else a "
            "plane through each footprint, and the table says which; experimental) and compare two visits (signed distance map, volume changes). Heavy work runs in a "
            "background process: Slicer stays responsive and the job can be cancelled.")
        parent.acknowledgementText = (
            "Method: Weiherer et al., 'Learning Neural Parametric 3D Breast Shape Models for Metrical Surface "
            "Reconstruction From Monocular RGB Videos' (liRBSM).")
        slicer.app.connect("startupCompleted()", lambda: register_in_slicer(parent.path, 0))


class BreastShapeModelWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/BreastShapeModel.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastShapeModelLogic()
        self.control = JobControl(widget_callbacks(self.ui, self.onRunningChanged, slicer.util.errorDisplay))
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.control.poll)
        self.ui.meanShapeButton.connect("clicked(bool)", lambda _: self.onRun(mean=True))
        self.ui.sampleButton.connect("clicked(bool)", lambda _: self.onRun(mean=False))
        self.ui.fitButton.connect("clicked(bool)", lambda _: self.onFit())
        self.ui.placeLandmarksButton.connect("clicked(bool)", lambda _: self.onPlaceLandmarks())
        self.ui.measureButton.connect("clicked(bool)", lambda _: self.onMeasure(again=False))
        self.ui.remeasureButton.connect("clicked(bool)", lambda _: self.onMeasure(again=True))
        self.ui.compareButton.connect("clicked(bool)", lambda _: self.onCompare())
        self.lastMeasure = None
        self.ui.useBundledCheckBox.connect("toggled(bool)", self.updateGUI)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *_: self.loadParameters())
        self.loadParameters()
        self.updateGUI()

    # ---------------------------------------------------------------- state <-> parameter node (saved with the scene)
    def parameters(self):
        return parameter_node(slicer.mrmlScene, "BreastShapeModel")

    def loadParameters(self):
        node = self.parameters()
        o = get(node, "fit_options", ScanOptions())
        self.ui.latentWeightSpinBox.value = o.latent_weight
        self.ui.anchorWeightSpinBox.value = o.anchor_weight
        self.ui.iterationsSpinBox.value = o.iterations
        self.ui.fitResolutionSpinBox.value = o.voxel_resolution
        self.ui.fitMetricalCheckBox.checked = o.metrical
        self.ui.nippleDistanceSpinBox.value = o.nipple_to_nipple_dist or 0
        model = get(node, "model", ModelChoice())
        self.ui.useBundledCheckBox.checked = model.ckpt is None
        self.ui.checkpointPathLineEdit.currentPath = model.ckpt or ""
        self.ui.configPathLineEdit.currentPath = model.config or ""
        self.ui.anchorsPathLineEdit.currentPath = model.anchors or ""
        for role, selector in (("fit_input", self.ui.fitInputSelector), ("landmarks", self.ui.landmarksSelector)):
            if get_node(node, role) is not None:
                selector.setCurrentNode(get_node(node, role))

    def cleanup(self):
        self.timer.stop()
        self.control.cancel()
        self.removeObservers()

    def updateGUI(self, *_):
        custom = not self.ui.useBundledCheckBox.checked
        for w in (self.ui.checkpointPathLineEdit, self.ui.configPathLineEdit, self.ui.anchorsPathLineEdit):
            w.enabled = custom
        task = self.control.task
        fitting = isinstance(task, FitJob)
        sampling = isinstance(task, ShapeJob)
        sampling_mean = sampling and task.request.mean
        measuring = isinstance(task, MeasureJob)
        remeasuring = measuring and bool(task.footprint_nodes)
        for button, mine, label in ((self.ui.meanShapeButton, sampling_mean, "Mean shape"),
                                    (self.ui.sampleButton, sampling and not sampling_mean, "Sample"),
                                    (self.ui.fitButton, fitting, "Fit"),
                                    (self.ui.measureButton, measuring and not remeasuring, "Measure"),
                                    (self.ui.remeasureButton, remeasuring, "Measure again with the edited footprints"),
                                    (self.ui.compareButton, isinstance(task, CompareJob), "Compare")):
            button.text = "Cancel" if mine else label
            button.enabled = mine or task is None
        if task is None and self.lastMeasure is None:
            self.ui.remeasureButton.enabled = False
        self.ui.progressBar.visible = task is not None

    def onRunningChanged(self, running):
        (self.timer.start if running else self.timer.stop)()
        self.updateGUI()

    def modelChoice(self):
        if self.ui.useBundledCheckBox.checked:
            model = ModelChoice()
        else:
            model = ModelChoice(self.ui.checkpointPathLineEdit.currentPath or None,
                                self.ui.configPathLineEdit.currentPath or None,
                                self.ui.anchorsPathLineEdit.currentPath or None)
        put(self.parameters(), "model", model)
        return model

    def onRun(self, mean):
        if self.control.running:                      # the button reads "Cancel" while a job runs
            self.control.cancel()
            return
        if not ensure_in_slicer("model"):
            return
        seed = self.ui.seedSpinBox.value
        request = SampleRequest(self.modelChoice(), num_samples=self.ui.numSamplesSpinBox.value,
                                seed=None if seed < 0 else seed, resolution=self.ui.resolutionSpinBox.value,
                                metrical=self.ui.metricalCheckBox.checked, mean=mean)
        self.control.start(lambda: self.logic.start(request), self.onShapesReady)

    def onShapesReady(self, job):
        nodes = job.load_results(slicer.mrmlScene)
        slicer.util.resetThreeDViews()
        return f"Loaded {len(nodes) // 2} shape(s)."

    def onPlaceLandmarks(self):
        node = place_landmarks_node(slicer.mrmlScene, slicer.mrmlScene.GenerateUniqueName("Landmarks"))
        self.ui.landmarksSelector.setCurrentNode(node)
        slicer.modules.markups.logic().SetActiveList(node)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.ui.logTextEdit.appendPlainText("Click the six landmarks on the scan in order: " + ", ".join(
            node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())))

    def onFit(self):
        if self.control.running:
            self.control.cancel()
            return
        if not ensure_in_slicer("model"):
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
        node = self.parameters()
        put(node, "fit_options", options)
        put_node(node, "fit_input", input_node)
        put_node(node, "landmarks", self.ui.landmarksSelector.currentNode())
        request = FitRequest(self.modelChoice(), input_path=path, options=options)
        self.control.start(lambda: self.logic.startFit(request, input_node, self.ui.landmarksSelector.currentNode()),
                           self.onFitted)

    def onFitted(self, job):
        model, anchors, *proposed = job.load_results(slicer.mrmlScene)
        self.ui.measureSurfaceSelector.setCurrentNode(model)      # ready to measure: the result and its landmarks
        self.ui.measureLandmarksSelector.setCurrentNode(self.ui.landmarksSelector.currentNode() or anchors)
        if proposed:                                              # found without clicks: to confirm, then Fit
            self.ui.landmarksSelector.setCurrentNode(proposed[0])
        r = job.report["residuals"]
        put(self.parameters(), "last_result", {"residuals": r, "fit_seconds": job.report["fit_seconds"]})
        message = (f"Fitted in {job.report['fit_seconds']:.0f} s: residual mean {r['mean_mm']:.2f} mm, "
                   f"95th percentile {r['p95_mm']:.2f} mm. Colours show support (distance to the input).")
        auto = job.report.get("auto_alignment")
        if auto:
            message += (f"\nNo landmarks: the torso was found by its shape ({auto['cost_mm']:.1f} mm from the mean "
                        f"torso); the landmarks found are the fitted anchors, made symmetric about the "
                        f"body's midline"
                        f"{'. ANOTHER ORIENTATION FITS ALMOST AS WELL: check the result' if auto['ambiguous'] else ''}.")
        if proposed:
            message += ("\nThe landmarks found wait on the scan as 'ProposedLandmarks' (unselected ones: check "
                        "first" + (": " + "; ".join(job.unsure) if job.unsure else "") + "). Drag any that are off, "
                        "then press Fit again to use them.")
        return message


    def onMeasure(self, again):
        if self.control.running:
            self.control.cancel()
            return
        if not ensure_in_slicer("model"):
            return
        surface = self.ui.measureSurfaceSelector.currentNode()
        landmarks = self.ui.measureLandmarksSelector.currentNode()
        footprints = self.lastMeasure.footprints if again and self.lastMeasure is not None else None
        self.control.start(lambda: MeasureJob(surface, landmarks, footprints).start(), self.onMeasured)

    def onMeasured(self, job):
        from BreastShapeModelLib.measure.report import summary_lines
        if self.lastMeasure is not None:        # the new results replace the old; edited footprints carry over
            self.lastMeasure.remove(slicer.mrmlScene)
        self.lastMeasure = job.load_results(slicer.mrmlScene)
        self.ui.measureTableView.setMRMLTableNode(self.lastMeasure.table)
        self.ui.remeasureButton.enabled = True
        return "\n".join(summary_lines(self.lastMeasure.report) + [
            "Drag the footprint curves' points to correct a breast's base, then Measure again."])

    def onCompare(self):
        if self.control.running:
            self.control.cancel()
            return
        if not ensure_in_slicer("model"):
            return
        ui = self.ui
        nodes = (ui.compareBeforeSelector.currentNode(), ui.compareAfterSelector.currentNode(),
                 ui.compareBeforeLandmarksSelector.currentNode(), ui.compareAfterLandmarksSelector.currentNode())
        self.control.start(lambda: CompareJob(*nodes).start(), self.onCompared)

    def onCompared(self, job):
        report, (model, table) = job.load_results(slicer.mrmlScene)
        self.ui.measureTableView.setMRMLTableNode(table)
        change = report["volume_change_ml"]
        return (f"Volume change: left {change['left']:+.0f} ml, right {change['right']:+.0f} ml; registration "
                f"residual {report['registration_residual_mm']:.2f} mm on the unchanged regions. '{model.GetName()}' "
                f"is coloured by the signed distance (red gained, blue lost).")


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
        """Fit the bundled model to the sample scan with its landmarks as markups, as a user would."""
        from BreastShapeModelLib.mrml_io import load_markups_node, load_model_node
        from BreastShapeModelLib.sample_data import sources
        self.delayDisplay("Fitting the sample scan with its six landmarks in a background job")
        scan_source = sources()[0]
        scan = load_model_node(slicer.mrmlScene, scan_source.files[0], frame="lps")
        landmarks = load_markups_node(slicer.mrmlScene, scan_source.files[1], frame="lps")
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
