"""BreastVideoReconstruction: phone video of a standing patient -> metric 3D breast surface + measurements.

Thin GUI over BreastVideoReconstructionLib (Qt-free, tested with pytest on slicer-core): the pipeline runs as a child
process (`PythonSlicer -m BreastVideoReconstructionLib run ... --progress json`) so Slicer never freezes; Cancel
stops it and keeps the finished steps, so running again resumes. Workflow: extract frames and cameras -> place the
six landmarks on a frame in the slice view -> reconstruct -> check every step.
"""
import os
from pathlib import Path

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from BreastShapeModelLib.dependencies import ensure_in_slicer
from BreastShapeModelLib.errors import UserError
from BreastShapeModelLib.job_control import JobControl, widget_callbacks
from BreastShapeModelLib.module_logic import ModelChoice
from BreastShapeModelLib.parameters import get, parameter_node, put
from BreastShapeModelLib.sample_data import register_in_slicer
from BreastVideoReconstructionLib.frame_volumes import (frames_sequence, place_frame_landmarks, proposed_frame_landmarks,
                                                        write_frame_landmarks)
from BreastShapeModelLib.measure_logic import MeasureJob
from BreastVideoReconstructionLib.module_logic import VideoJob, VideoRequest, load_result_landmarks, load_steps
from BreastVideoReconstructionLib.options import VideoOptions
from BreastVideoReconstructionLib.workspace import VideoWorkspace as W


class BreastVideoReconstruction(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "Breast Video Reconstruction"
        parent.categories = ["Breast Shape"]
        parent.dependencies = ["BreastShapeModel"]
        parent.contributors = ["SlicerBreastShape developers"]
        parent.helpText = (
            "Reconstruct a metric 3D breast surface from a phone video: frames, Structure-from-Motion, six "
            "landmarks placed on one frame (or found automatically, experimental: check them before measuring), "
            "alignment and fitting of the liRBSM shape model (BreastShapeModel module).")
        parent.acknowledgementText = (
            "Method: Weiherer et al., 'Learning Neural Parametric 3D Breast Shape Models for Metrical Surface "
            "Reconstruction From Monocular RGB Videos' (liRBSM).")
        slicer.app.connect("startupCompleted()", lambda: register_in_slicer(parent.path, 1))


class BreastVideoReconstructionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/BreastVideoReconstruction.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.control = JobControl(widget_callbacks(self.ui, self.onRunningChanged, slicer.util.errorDisplay))
        self.timer = qt.QTimer()
        self.timer.setInterval(250)
        self.timer.connect("timeout()", self.control.poll)
        self.frames = None                                  # (sequence, browser, proxy volume) once shown
        self.pointsNode = None
        self.pictures = []
        self.ui.runButton.connect("clicked(bool)", lambda _: self.onRun())
        self.ui.prepareFramesButton.connect("clicked(bool)", lambda _: self.onRun(until="sfm"))
        self.ui.placeFrameLandmarksButton.connect("clicked(bool)", lambda _: self.onPlaceLandmarks())
        self.ui.findLandmarksButton.connect("clicked(bool)", lambda _: self.onRun(auto=True))
        self.ui.saveFrameLandmarksButton.connect("clicked(bool)", lambda _: self.onSaveLandmarks())
        self.ui.checkLandmarksButton.connect("clicked(bool)", lambda _: self.onCheck())
        self.ui.overviewButton.connect("clicked(bool)", lambda _: self.showPicture(self.output() / W.OVERVIEW))
        self.ui.measureButton.connect("clicked(bool)", lambda _: self.onMeasure())
        self.result = None
        self.ui.overlayButton.connect("clicked(bool)", lambda _: self.showPicture(self.output() / W.OVERLAY))
        self.ui.videoPathLineEdit.connect("currentPathChanged(QString)", self.onVideoChanged)
        self.ui.progressBar.visible = False
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *_: self.loadParameters())
        self.loadParameters()

    # ---------------------------------------------------------------- state <-> parameter node (saved with the scene)
    def parameters(self):
        return parameter_node(slicer.mrmlScene, "BreastVideoReconstruction")

    def loadParameters(self):
        node = self.parameters()
        o = get(node, "options", VideoOptions())
        self.ui.videoPathLineEdit.currentPath = get(node, "video", "")
        self.ui.landmarksPathLineEdit.currentPath = get(node, "landmarks", "")
        self.ui.outputPathLineEdit.currentPath = get(node, "output", "")
        self.ui.nippleDistanceSpinBox.value = o.fit.nipple_to_nipple_dist or 0
        self.ui.framesSpinBox.value = o.frames.num_frames
        self.ui.iterationsSpinBox.value = o.fit.iterations
        self.ui.resolutionSpinBox.value = o.fit.voxel_resolution
        self.ui.colorizeCheckBox.checked = o.colour.colorize
        self.ui.removeInvisibleCheckBox.checked = o.colour.remove_invisible
        self.ui.checkpointPathLineEdit.currentPath = o.model.ckpt or ""

    def options(self):
        o = VideoOptions()
        nipples = self.ui.nippleDistanceSpinBox.value
        o.frames.num_frames = self.ui.framesSpinBox.value
        o.fit.nipple_to_nipple_dist = nipples if nipples > 0 else None
        o.fit.iterations = self.ui.iterationsSpinBox.value
        o.fit.voxel_resolution = self.ui.resolutionSpinBox.value
        o.colour.colorize = self.ui.colorizeCheckBox.checked
        o.colour.remove_invisible = self.ui.removeInvisibleCheckBox.checked
        o.model = ModelChoice(self.ui.checkpointPathLineEdit.currentPath or None)
        node = self.parameters()
        put(node, "options", o)
        for key, edit in (("video", self.ui.videoPathLineEdit), ("landmarks", self.ui.landmarksPathLineEdit),
                          ("output", self.ui.outputPathLineEdit)):
            put(node, key, edit.currentPath)
        return o

    def output(self):
        return Path(self.ui.outputPathLineEdit.currentPath or ".")

    # ---------------------------------------------------------------- jobs
    def cleanup(self):
        self.timer.stop()
        self.control.cancel()
        self.removeObservers()

    def onVideoChanged(self, path):
        if path and not self.ui.outputPathLineEdit.currentPath:
            self.ui.outputPathLineEdit.currentPath = os.path.splitext(path)[0] + "_breast"

    def onRunningChanged(self, running):
        (self.timer.start if running else self.timer.stop)()
        self.ui.runButton.text = "Cancel" if running else "Reconstruct"
        self.ui.prepareFramesButton.enabled = not running
        self.ui.measureButton.enabled = not running and self.result is not None
        self.ui.progressBar.visible = running

    def onRun(self, until=None, auto=False):
        if self.control.running:                          # the button reads "Cancel" while the pipeline runs
            self.control.cancel("Cancelled; finished steps are kept, Reconstruct resumes.")
            return
        if not ensure_in_slicer("video"):
            return
        request = VideoRequest(self.ui.videoPathLineEdit.currentPath, self.ui.landmarksPathLineEdit.currentPath,
                               self.ui.outputPathLineEdit.currentPath, self.options(), self.ui.forceCheckBox.checked,
                               until=until, auto=auto)
        self.control.start(lambda: BreastVideoReconstructionLogic().start(request),
                           self.onFramesReady if until else self.onProposed if auto else self.onReconstructed)

    def onFramesReady(self, job):
        self.frames = frames_sequence(slicer.mrmlScene, job.output_dir,
                                      sequences_logic=slicer.modules.sequences.logic())
        slicer.util.setSliceViewerLayers(background=self.frames[2], fit=True)
        slicer.modules.sequences.setToolBarActiveBrowserNode(self.frames[1])
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
        return "Frames and cameras ready: step through the frames, then place the six landmarks on one."

    def onProposed(self, job):
        """The run without landmarks finished: its result loads, and the landmarks it found wait on their frame
        for the user to check, drag and accept (3, then Reconstruct)."""
        message = self.onReconstructed(job)
        if self.frames is None:
            self.onFramesReady(job)
        self.pointsNode, unsure = proposed_frame_landmarks(slicer.mrmlScene, job.output_dir, self.frames[1],
                                                           slicer.modules.sequences.logic())
        slicer.util.setSliceViewerLayers(background=self.frames[2], fit=True)
        check = ("Check these (unselected): " + "; ".join(unsure)) if unsure else "All six look supported."
        return (f"{message}\nLandmarks found automatically are on frame "
                f"{self.pointsNode.GetAttribute('BreastShape.FrameImage')}. {check} Drag any that are off, then "
                f"press 3 and Reconstruct to use them.")

    def onReconstructed(self, job):
        nodes = job.load_results(slicer.mrmlScene)
        self.result = (nodes[0], load_result_landmarks(slicer.mrmlScene, job.output_dir) or nodes[1])
        if self.ui.showStepsCheckBox.checked:
            nodes += list(load_steps(slicer.mrmlScene, job.output_dir).values())
        put(self.parameters(), "last_result", job.report.get("measurements") or {})
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        slicer.util.resetThreeDViews()
        return job.summary()

    def onMeasure(self):
        if self.control.running or self.result is None:
            return
        self.control.start(lambda: MeasureJob(*self.result).start(), self.onMeasured)

    def onMeasured(self, job):
        from BreastShapeModelLib.measure.report import summary_lines
        result = job.load_results(slicer.mrmlScene)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(result.table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        return "\n".join(summary_lines(result.report) + [
            f"Every value with its interval is in the table '{result.table.GetName()}'."])

    # ---------------------------------------------------------------- landmarks on a frame
    def onPlaceLandmarks(self):
        if self.frames is None:
            slicer.util.errorDisplay("Extract the frames first (step 1).")
            return
        self.pointsNode = place_frame_landmarks(slicer.mrmlScene, self.frames[1])
        slicer.modules.markups.logic().SetActiveList(self.pointsNode)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)

    def onSaveLandmarks(self):
        try:
            image = self.pointsNode.GetAttribute("BreastShape.FrameImage") if self.pointsNode else None
            if not image:
                raise UserError("Place the landmarks on a frame first (step 2).")
            path = write_frame_landmarks(self.pointsNode, self.frames[2],
                                         self.output() / (os.path.splitext(image)[0] + "_landmarks.json"))
        except UserError as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.ui.landmarksPathLineEdit.currentPath = str(path)
        self.ui.logTextEdit.appendPlainText(f"Landmarks saved: {path}. Press Reconstruct.")

    # ---------------------------------------------------------------- check
    def onCheck(self):
        from BreastVideoReconstructionLib.landmark_check import landmark_check
        try:
            path, _ = landmark_check(self.output())
        except UserError as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.showPicture(path)

    def showPicture(self, path):
        if not os.path.isfile(path):
            slicer.util.errorDisplay(f"{path}: not written yet (reconstruct first).")
            return
        label = qt.QLabel()
        label.setPixmap(qt.QPixmap(str(path)))
        label.setWindowTitle(os.path.basename(str(path)))
        label.show()
        self.pictures.append(label)


class BreastVideoReconstructionLogic(ScriptedLoadableModuleLogic):
    """Glue only: the behaviour lives in BreastVideoReconstructionLib (tested without Qt)."""

    def start(self, request):
        return VideoJob(request).start()


class BreastVideoReconstructionTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear(0)
        self.test_synthetic_video_workflow()

    def test_synthetic_video_workflow(self):
        """On the sample video: extract frames and cameras, place its landmarks on the frame as a user would click
        them, reconstruct, load the result and every step upright."""
        import json
        import tempfile
        from BreastShapeModelLib.sample_data import sources
        from BreastVideoReconstructionLib.frame_volumes import current_image
        from BreastVideoReconstructionLib.landmarks2d import read_landmarks_2d
        from BreastVideoReconstructionLib.scene_io import landmark_pixels_in_frame
        video, landmark_file = sources()[1].files
        options = VideoOptions()
        options.frames.num_frames, options.fit.iterations, options.fit.voxel_resolution = 24, 300, 128
        out = Path(tempfile.mkdtemp()) / "out"
        truth = read_landmarks_2d(landmark_file)
        prepare = BreastVideoReconstructionLogic().start(VideoRequest(str(video), "", str(out), options, until="sfm"))
        self.assertEqual(prepare.job.wait(900), 0, prepare.job.error_message())
        frames = json.loads((out / W.FRAMES).read_text())
        image = next(f["image"] for f in frames["frames"] if f["source_frame"] == truth.video_frame)
        sequence, browser, proxy = frames_sequence(slicer.mrmlScene, out, select=image,
                                                   sequences_logic=slicer.modules.sequences.logic())
        self.assertEqual(current_image(browser), image)
        points = place_frame_landmarks(slicer.mrmlScene, browser)
        for i, (x, y) in enumerate(landmark_pixels_in_frame(out, truth)):
            points.SetNthControlPointPosition(i, -x, -y, 0.0)
        landmarks = write_frame_landmarks(points, proxy, out / "placed_landmarks.json")
        job = BreastVideoReconstructionLogic().start(VideoRequest(str(video), str(landmarks), str(out), options))
        self.assertEqual(job.job.wait(900), 0, job.job.error_message())
        model, anchors = job.load_results(slicer.mrmlScene)
        self.assertGreater(model.GetPolyData().GetNumberOfPoints(), 1000)
        notch, navel = anchors.GetNthControlPointPosition(0), anchors.GetNthControlPointPosition(1)
        self.assertGreater(notch[2], navel[2])                   # upright: sternal notch superior
        self.assertGreater(len(load_steps(slicer.mrmlScene, out)), 2)
        self.delayDisplay("Test passed")
