"""BreastVideoReconstruction: phone video of a standing patient -> metric 3D breast surface + measurements.

Thin GUI over BreastVideoReconstructionLib (Qt-free). The pipeline's GUI is built as the Lib's commands land.
"""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


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
        self.ui.statusLabel.text = "The video pipeline is not available in this version yet."


class BreastVideoReconstructionLogic(ScriptedLoadableModuleLogic):
    """Glue only: the behaviour lives in BreastVideoReconstructionLib."""


class BreastVideoReconstructionTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear(0)
        import BreastVideoReconstructionLib
        self.assertTrue(BreastVideoReconstructionLib.__version__)
        self.delayDisplay("Test passed")
