"""README screenshots of the Slicer workflow, made from a real MRML scene (slicer-core) and VTK offscreen rendering:

1. the landmark frame as the module shows it (the sequence's frame volume) with the six markups clicked on it,
   their pixels read back through the module's RAS -> pixel conversion;
2. the result as loaded by the module (upright, RAS, coloured by support) with every step: camera path, sparse
   SfM points, aligned cloud and the video landmarks, seen from the patient's front.

    python scripts/slicer_screenshots.py RUN_DIR LANDMARK_FILE [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def render_scene_nodes(nodes, markups, path: Path, size=(900, 700), focus=None) -> Path:
    """Model nodes (their RAS polydata, active scalars as colours) and markups as spheres, from anterior-left,
    framed on `focus` (a node; default: everything)."""
    import vtk
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(1, 1, 1)
    for node in nodes:
        display = node.GetDisplayNode()
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(node.GetPolyData())
        name = display.GetActiveScalarName()
        if display.GetScalarVisibility() and name:
            mapper.SetScalarModeToUsePointFieldData()
            mapper.SelectColorArray(name)
            arr = node.GetPolyData().GetPointData().GetArray(name)
            if arr.GetNumberOfComponents() == 1:
                lut = vtk.vtkLookupTable()
                lut.SetHueRange(0.33, 0.0)                # green (seen) -> red (filled in by the model)
                lut.Build()
                mapper.SetLookupTable(lut)
                mapper.SetScalarRange(0, max(5.0, float(np.percentile([arr.GetValue(i) for i in range(arr.GetNumberOfTuples())], 95))))
            else:
                mapper.SetColorModeToDirectScalars()
        else:
            mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*display.GetColor())
        actor.GetProperty().SetPointSize(display.GetPointSize())
        actor.GetProperty().SetLineWidth(3)
        renderer.AddActor(actor)
    for node in markups:
        for i in range(node.GetNumberOfControlPoints()):
            sphere = vtk.vtkSphereSource()
            sphere.SetCenter(*node.GetNthControlPointPosition(i))
            sphere.SetRadius(6)
            mapper = vtk.vtkPolyDataMapper()
            mapper.SetInputConnection(sphere.GetOutputPort())
            actor = vtk.vtkActor()
            actor.SetMapper(mapper)
            actor.GetProperty().SetColor(0.9, 0.2, 0.2)
            renderer.AddActor(actor)
    camera = renderer.GetActiveCamera()
    camera.SetPosition(0, 1, 0)                            # anterior, looking posterior, S up
    camera.SetFocalPoint(0, 0, 0)
    camera.SetViewUp(0, 0, 1)
    camera.Azimuth(-30)
    camera.Elevation(10)
    if focus is not None:
        b = np.array(focus.GetPolyData().GetBounds()).reshape(3, 2)
        centre, half = b.mean(1), (b[:, 1] - b[:, 0]) * 1.1
        renderer.ResetCamera(*np.stack([centre - half, centre + half], 1).ravel())
    else:
        renderer.ResetCamera()
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    return path


def main(run_dir: str, landmark_file: str, out_dir: str = "Resources/Screenshots") -> None:
    import cv2
    import slicer
    from BreastVideoReconstructionLib.frame_volumes import (frames_sequence, place_frame_landmarks,
                                                            write_frame_landmarks)
    from BreastVideoReconstructionLib.landmarks2d import overlay, read_landmarks_2d
    from BreastVideoReconstructionLib.module_logic import load_result, load_steps
    from BreastVideoReconstructionLib.scene_io import frame_index, landmark_pixels_in_frame, load_scene
    run, out = Path(run_dir), Path(out_dir)
    scene = slicer.vtkMRMLScene()
    lm = read_landmarks_2d(landmark_file)
    image = load_scene(run).cameras[frame_index(run, load_scene(run), lm, None)].name
    _, browser, proxy = frames_sequence(scene, run, select=image)
    points = place_frame_landmarks(scene, browser)
    for i, (x, y) in enumerate(landmark_pixels_in_frame(run, lm)):        # where a user clicks in the Red view
        points.SetNthControlPointPosition(i, -x, -y, 0.0)
    placed = read_landmarks_2d(write_frame_landmarks(points, proxy, run / "screenshot_landmarks.json"))
    (run / "screenshot_landmarks.json").unlink()
    frame = cv2.imread(str(run / "images" / image))[:, :, ::-1]
    cv2.imwrite(str(out / "slicer_frame_landmarks.png"), overlay(frame, placed.points)[:, :, ::-1])
    _, (model, anchors) = load_result(scene, run, coloured=False)
    steps = load_steps(scene, run)
    render_scene_nodes([model, steps["cameras"], steps["sparse"], steps["aligned"]], [anchors],
                       out / "slicer_result_steps.png", focus=model)
    print(out / "slicer_frame_landmarks.png", out / "slicer_result_steps.png")


if __name__ == "__main__":
    main(*sys.argv[1:])
