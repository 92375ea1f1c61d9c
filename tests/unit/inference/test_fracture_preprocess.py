"""Radiograph preprocessing: whole-image percentiles and the optional local contrast term."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from triage.imaging.radiograph import Radiograph
from triage.inference.fracture import local_contrast, normalise, preprocess
from triage.inference.spec import IntensitySpec, PreprocessSpec


def _radiograph(array: npt.NDArray[np.float32]) -> Radiograph:
    return Radiograph(
        array=array.astype(np.float32),
        pixel_spacing_mm=(0.4, 0.4),
        spacing_source="PixelSpacing",
        sop_instance_uid="2.25.1",
        series_uid="2.25.2",
        study_uid="2.25.3",
    )


def _faint_and_strong() -> npt.NDArray[np.float32]:
    """A dark half with a faint 0.02 bar and a bright half with a strong 0.5 bar (0..1 units)."""
    image = np.full((200, 200), 0.2, np.float32)
    image[:, 100:] = 0.6
    image[95:105, 20:80] += 0.02  # faint: a rib fracture's contrast under global percentiles
    image[95:105, 120:180] += 0.35  # strong: a limb cortex
    return image


def test_flat_image_maps_to_blend_of_itself_and_mid_grey() -> None:
    flat = np.full((64, 64), 0.3, np.float32)
    out = local_contrast(flat, 2.0, (0.4, 0.4), 0.5)
    np.testing.assert_allclose(out, 0.5 * 0.3 + 0.5 * 0.5, atol=1e-5)


def test_weight_zero_is_identity() -> None:
    image = _faint_and_strong()
    np.testing.assert_allclose(local_contrast(image, 4.0, (0.4, 0.4), 0.0), image, atol=1e-6)


def test_faint_structure_gets_a_range_comparable_to_a_strong_one() -> None:
    image = _faint_and_strong()
    local = local_contrast(image, 4.0, (0.4, 0.4), 1.0)
    faint_before = image[100, 50] - image[80, 50]
    strong_before = image[100, 150] - image[80, 150]
    faint_after = local[100, 50] - local[80, 50]
    strong_after = local[100, 150] - local[80, 150]
    assert strong_before / faint_before > 15
    assert faint_after > 0.15  # from 0.02 of the range to a large fraction of it
    assert strong_after / faint_after < 2.0


def test_output_stays_in_unit_range() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (128, 96)).astype(np.float32)
    out = local_contrast(image, 1.0, (0.4, 0.4), 0.7)
    assert out.dtype == np.float32
    assert out.min() >= 0.0
    assert out.max() <= 1.0


def test_sigma_is_in_millimetres_not_pixels() -> None:
    image = _faint_and_strong()
    fine = local_contrast(image, 4.0, (0.4, 0.4), 1.0)
    coarse_pixels = local_contrast(image, 4.0, (0.8, 0.8), 1.0)  # same mm, half the pixels
    assert not np.allclose(fine, coarse_pixels, atol=1e-3)


def test_preprocess_applies_local_term_only_when_the_card_asks() -> None:
    raw = (_faint_and_strong() * 1000.0).astype(np.float32)
    plain = PreprocessSpec(
        target_spacing_mm=(0.4, 0.4),
        axcodes="RA",
        intensity=IntensitySpec(mode="percentile", low=0.5, high=99.5),
    )
    local = plain.model_copy(
        update={
            "intensity": IntensitySpec(
                mode="percentile", low=0.5, high=99.5, local_sigma_mm=4.0, local_weight=0.5
            )
        }
    )
    radiograph = _radiograph(raw)
    without = preprocess(radiograph, plain).image
    with_local = preprocess(radiograph, local).image
    np.testing.assert_allclose(without, normalise(raw, 0.5, 99.5).T, atol=1e-5)
    expected = local_contrast(normalise(raw, 0.5, 99.5), 4.0, (0.4, 0.4), 0.5).T
    np.testing.assert_allclose(with_local, expected, atol=1e-5)
    assert not np.allclose(without, with_local, atol=1e-3)


@pytest.mark.parametrize(("field", "value"), [("local_sigma_mm", 0.0), ("local_weight", 1.5)])
def test_spec_rejects_meaningless_local_settings(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        IntensitySpec(mode="percentile", low=0.5, high=99.5, **{field: value})


def test_old_cards_without_local_fields_load_unchanged() -> None:
    spec = IntensitySpec.model_validate({"mode": "percentile", "low": 0.5, "high": 99.5})
    assert spec.local_sigma_mm is None
