"""Resample to a model's voxel size (SimpleITK, linear, extent kept, optional anti-aliasing)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from triage.imaging.geometry import is_orthonormal
from triage.imaging.volume import Volume


def to_sitk(volume: Volume) -> sitk.Image:
    """Return a SimpleITK image with the volume's voxels, spacing, origin and direction."""
    if not is_orthonormal(volume.affine_lps):
        raise ValueError("volume axes must be orthogonal to convert to SimpleITK (gantry tilt?)")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array, dtype=np.float32))
    spacing = volume.spacing_ijk_mm
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(float(v) for v in volume.affine_lps[:3, 3]))
    directions = volume.affine_lps[:3, :3] / np.asarray(spacing)[None, :]
    # ITK cannot invert a direction holding subnormal cosines (it silently resamples to all
    # background); such values are numerical noise from upstream arithmetic, so flush them to 0.
    directions = np.where(np.abs(directions) < 1e-12, 0.0, directions)
    image.SetDirection(tuple(float(v) for v in directions.flatten()))
    return image


def from_sitk(image: sitk.Image) -> Volume:
    """Return a :class:`Volume` from a SimpleITK image (LPS, as ITK uses)."""
    directions = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = directions * np.asarray(image.GetSpacing())[None, :]
    affine[:3, 3] = image.GetOrigin()
    return Volume(array=sitk.GetArrayFromImage(image).astype(np.float32), affine_lps=affine)


def anti_alias_sigmas_mm(
    old_spacing_mm: tuple[float, ...], new_spacing_mm: tuple[float, ...]
) -> tuple[float, ...]:
    """Return the Gaussian pre-filter sigma (mm) per axis for downsampling: ``(new - old) / 2``.

    This is scikit-image's ``anti_aliasing`` rule (sigma = (factor - 1) / 2 source voxels); axes
    that keep or refine their voxel size get 0 (no filter).

    >>> anti_alias_sigmas_mm((0.5, 0.7, 2.5), (1.0, 0.7, 2.0))
    (0.25, 0.0, 0.0)
    """
    pairs = zip(old_spacing_mm, new_spacing_mm, strict=True)
    return tuple(max(0.0, (new - old) / 2.0) for old, new in pairs)


def smooth_mm(image: sitk.Image, sigmas_mm: tuple[float, ...]) -> sitk.Image:
    """Gaussian-smooth a SimpleITK image with one sigma (mm) per axis; a zero sigma leaves the axis.

    ``DiscreteGaussian`` (not the recursive filter) because anti-aliasing sigmas are often under one
    voxel, where the recursive approximation is poor.
    """
    if not any(s > 0 for s in sigmas_mm):
        return image
    return sitk.DiscreteGaussian(
        image,
        variance=[float(s) ** 2 for s in sigmas_mm],
        maximumKernelWidth=64,
        maximumError=0.01,
        useImageSpacing=True,
    )


def resample_to_spacing(
    volume: Volume,
    spacing_ijk_mm: tuple[float, float, float],
    *,
    default_value: float = -1024.0,
    anti_alias: bool = False,
) -> Volume:
    """Return the volume resampled (linear) to the given voxel size, covering the same extent.

    The first voxel centre is kept; the number of voxels along each axis is the old physical extent
    divided by the new voxel size, rounded. Values outside the source take ``default_value``.

    ``anti_alias`` Gaussian-filters each axis whose voxel grows (sigma from
    :func:`anti_alias_sigmas_mm`) before interpolating. Without it, linear interpolation from
    thin slices (0.6 mm) to a coarse model grid (2 mm) keeps the full per-slice noise and drops
    the signal between sample points; with it, the coarse voxel averages what it covers, as a
    thicker reconstruction would.
    """
    if any(s <= 0 for s in spacing_ijk_mm):
        raise ValueError(f"spacing_ijk_mm must be positive, got {spacing_ijk_mm!r}")
    old_spacing = np.asarray(volume.spacing_ijk_mm)
    new_spacing = np.asarray(spacing_ijk_mm, dtype=np.float64)
    old_size = np.asarray(volume.shape_ijk)
    new_size = np.maximum(np.round(old_size * old_spacing / new_spacing).astype(int), 1)
    if np.allclose(old_spacing, new_spacing, rtol=1e-6) and np.array_equal(old_size, new_size):
        return volume
    image = to_sitk(volume)
    if anti_alias:
        sigmas = anti_alias_sigmas_mm(tuple(old_spacing.tolist()), tuple(new_spacing.tolist()))
        image = smooth_mm(image, sigmas)
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(tuple(float(s) for s in new_spacing))
    resampler.SetSize([int(s) for s in new_size])
    resampler.SetOutputOrigin(image.GetOrigin())
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(default_value))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return from_sitk(resampler.Execute(image))
