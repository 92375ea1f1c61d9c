"""A coarse lung mask from HU thresholds (SimpleITK), to drop nodule candidates outside the lungs.

Standard CAD post-processing: air-like voxels (< -400 HU) inside the body, without the air around
the patient (components touching the in-plane border), keeping the large components (the lungs;
the trachea may join them), then dilated so juxta-pleural nodules at the lung wall stay in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from triage.imaging.resample import to_sitk
from triage.imaging.volume import Volume

_AIR_HU = -400.0
_MIN_LUNG_ML = 50.0  # smaller air components (bowel gas, small cysts) are not lungs


def lung_mask(volume: Volume, *, margin_mm: float = 10.0) -> npt.NDArray[np.bool_]:
    """Return a boolean ``[k, j, i]`` lung mask dilated by ``margin_mm`` (empty if none is found).

    >>> v = Volume(np.full((4, 8, 8), 40.0, dtype=np.float32), np.diag([20.0, 20.0, 20.0, 1.0]))
    >>> v.array[1:3, 2:6, 2:6] = -850.0
    >>> bool(lung_mask(v, margin_mm=0.0)[1, 3, 3]), bool(lung_mask(v, margin_mm=0.0)[0, 0, 0])
    (True, False)
    """
    air = volume.array < _AIR_HU
    outside = _touching_inplane_border(air)
    candidates = air & ~outside
    image = sitk.GetImageFromArray(candidates.astype(np.uint8))
    image.CopyInformation(to_sitk(volume))
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(image), sortByObjectSize=True)
    voxel_ml = float(np.prod(volume.spacing_ijk_mm)) / 1000.0
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    keep = [
        lab for lab in stats.GetLabels() if stats.GetNumberOfPixels(lab) * voxel_ml >= _MIN_LUNG_ML
    ]
    label_array = sitk.GetArrayFromImage(labels)
    mask = np.isin(label_array, keep)
    if margin_mm > 0 and mask.any():
        radius = [max(int(round(margin_mm / s)), 1) for s in volume.spacing_ijk_mm]
        dilated = sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), radius)
        mask = sitk.GetArrayFromImage(dilated).astype(bool)
    return mask


def _touching_inplane_border(air: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Return the air connected, within its own slice, to the edge of the field of view.

    Components are labelled slice by slice (2-D), not in 3-D: in 3-D the lungs join the air
    outside the patient wherever any one slice opens them to it (the apex above the chest wall,
    a slab that ends in the neck, a gap in a thin body wall), and every slice of both lungs was
    then removed as "outside" — an empty mask that made the filter drop every candidate.
    """
    border = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels = sitk.GetArrayFromImage(
            sitk.ConnectedComponent(sitk.GetImageFromArray(air[k].astype(np.uint8)), True)
        )
        edge = np.concatenate([labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]])
        ids = np.unique(edge[edge > 0])
        if ids.size:
            border[k] = np.isin(labels, ids)
    return border
