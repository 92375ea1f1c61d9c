"""CT preprocessing: the card's ``anti_alias`` switch reaches the resampler, off by default."""

from __future__ import annotations

import numpy as np

from triage.imaging.volume import Volume, affine_from_geometry
from triage.inference import lung_nodule
from triage.inference.spec import IntensitySpec, PreprocessSpec


def _thin_slice_noise(seed: int = 0) -> Volume:
    """Lung-like -800 HU with 40 HU white noise on 0.5 mm slices (a thin reconstruction)."""
    rng = np.random.default_rng(seed)
    values = (-800.0 + 40.0 * rng.normal(size=(120, 48, 48))).astype(np.float32)
    return Volume(values, affine_from_geometry((0.0, 0.0, 0.0), np.eye(3), (0.5, 0.5, 0.5)))


def _prep(anti_alias: bool) -> PreprocessSpec:
    return PreprocessSpec(
        target_spacing_mm=(1.0, 1.0, 2.0),
        axcodes="LPS",
        intensity=IntensitySpec(mode="window", low=-1024.0, high=300.0),
        anti_alias=anti_alias,
    )


def test_cards_without_the_field_keep_plain_linear_resampling() -> None:
    assert PreprocessSpec().anti_alias is False
    volume = _thin_slice_noise()
    default = lung_nodule.preprocess(volume, _prep(False))
    explicit = lung_nodule.preprocess(
        volume,
        PreprocessSpec(
            target_spacing_mm=(1.0, 1.0, 2.0), axcodes="LPS", intensity=_prep(False).intensity
        ),
    )
    np.testing.assert_array_equal(default.image, explicit.image)


def test_anti_alias_card_lowers_thin_slice_noise_at_the_same_level_and_geometry() -> None:
    volume = _thin_slice_noise()
    plain = lung_nodule.preprocess(volume, _prep(False))
    smoothed = lung_nodule.preprocess(volume, _prep(True))
    assert plain.image.shape == smoothed.image.shape == (24, 24, 30)
    np.testing.assert_allclose(plain.affine_lps, smoothed.affine_lps)
    assert float(smoothed.image.std()) < 0.5 * float(plain.image.std())
    assert abs(float(smoothed.image.mean()) - float(plain.image.mean())) < 0.005
