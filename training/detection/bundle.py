"""Import MONAI's ``lung_nodule_ct_detection`` bundle as a served model (``triage import-bundle``).

The bundle's configs are data to this importer, never code: its ``$``-expressions are not evaluated.
The numbers it can read from ``configs/inference.json`` / ``train.json`` (voxel size, orientation,
HU window, anchors, box selection, patch size, backbone) are cross-checked against the defaults of
:class:`~triage.inference.spec.NetworkSpec`, ``DetectionSpec`` and ``PreprocessSpec`` — which *are*
the bundle's published configuration — and ``models/model.pt`` is loaded with
``torch.load(weights_only=True)`` and must match that network key by key and shape by shape. The
network is then exported to ONNX, checked against torch, and described by a model card that keeps
the bundle's version and its own intended-use statement.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from training.detection.export import _previous_changelog, parity, write_card
from triage.inference.card import ChangelogEntry, IOContract, ModelCard, WeightsRef, sha256_file
from triage.inference.networks import build_network, export_onnx, output_names
from triage.inference.spec import DetectionSpec, NetworkSpec, PreprocessSpec

logger = logging.getLogger(__name__)

BUNDLE_NAME = "lung_nodule_ct_detection"
CONFIG_FILES = ("configs/inference.json", "configs/train.json")
WEIGHTS_FILE = "models/model.pt"
STATE_DICT_WRAPPERS = ("model", "network", "state_dict")
DEFAULT_NOTICE = (
    "NOT FOR DIAGNOSTIC USE. Research model imported from the MONAI Model Zoo bundle "
    f"{BUNDLE_NAME} (RetinaNet trained on LUNA16); not validated for clinical use in this engine."
)
_TRANSFORM_FIELDS = {
    "Spacingd": ("pixdim",),
    "Orientationd": ("axcodes",),
    "ScaleIntensityRanged": ("a_min", "a_max"),
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def expected_numbers(
    network: NetworkSpec, detection: DetectionSpec, preprocess: PreprocessSpec
) -> dict[str, object]:
    """Return the bundle-config fields this importer checks, with our specs' values."""
    return {
        "Spacingd.pixdim": tuple(preprocess.target_spacing_mm),
        "Orientationd.axcodes": preprocess.axcodes,
        "ScaleIntensityRanged.a_min": preprocess.intensity.low,
        "ScaleIntensityRanged.a_max": preprocess.intensity.high,
        "anchor_generator.base_anchor_shapes": detection.base_anchor_shapes,
        "anchor_generator.feature_map_scales": detection.feature_map_scales,
        "network_def.size_divisible": detection.size_divisible,
        "network_def.num_anchors": detection.num_anchors,
        "network_def.num_classes": network.num_classes,
        "network_def.spatial_dims": network.spatial_dims,
        "backbone.conv1_t_stride": network.conv1_t_stride,
        "backbone.conv1_t_size": network.conv1_t_size,
        "feature_extractor.returned_layers": network.returned_layers,
        "infer_patch_size": detection.roi_size,
        "val_patch_size": detection.roi_size,
        "set_box_selector_parameters.score_thresh": detection.score_thresh,
        "set_box_selector_parameters.topk_candidates_per_level": (
            detection.topk_candidates_per_level
        ),
        "set_box_selector_parameters.nms_thresh": detection.nms_thresh,
        "set_box_selector_parameters.detections_per_img": detection.detections_per_img,
        "set_sliding_window_inferer.overlap": detection.overlap,
    }


def config_numbers(config: Mapping[str, object]) -> dict[str, object]:
    """Return the numbers a bundle config states, named as in :func:`expected_numbers`.

    ``@key`` references to top-level keys are followed; ``$`` expressions are only read with
    regular expressions (never evaluated).
    """
    found: dict[str, object] = {}
    for node in _dicts(config):
        target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
        for field in _TRANSFORM_FIELDS.get(target, ()):
            if field in node:
                found[f"{target}.{field}"] = _resolve(config, node[field])
    for section, fields in (
        ("anchor_generator", ("base_anchor_shapes", "feature_map_scales")),
        ("network_def", ("size_divisible", "num_anchors", "num_classes", "spatial_dims")),
    ):
        part = config.get(section)
        if isinstance(part, Mapping):
            found.update({f"{section}.{f}": _resolve(config, part[f]) for f in fields if f in part})
    for key in ("infer_patch_size", "val_patch_size"):
        if key in config:
            found[key] = _resolve(config, config[key])
    found.update(_expression_numbers(config))
    return found


def check_bundle_config(
    config: Mapping[str, object], expected: Mapping[str, object], *, source: str
) -> list[str]:
    """Return the checked field names; raise on the first value that differs from ``expected``.

    Raises:
        ValueError: naming the field, the bundle's value and ours.
    """
    checked = []
    for field, theirs in config_numbers(config).items():
        if field not in expected:
            continue
        ours = expected[field]
        if not _same(theirs, ours):
            raise ValueError(
                f"bundle {source} field {field} must be {_show(ours)} (the {BUNDLE_NAME} "
                f"configuration this importer builds), got {_show(theirs)}"
            )
        checked.append(field)
    return checked


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a bundle's ``model.pt`` with ``weights_only=True`` (never unpickling code).

    Accepts a bare state dict or one wrapped as ``{"model": ...}``, ``{"network": ...}`` or
    ``{"state_dict": ...}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file holds no tensors-only state dict, or objects ``weights_only`` refuses.
    """
    if not path.is_file():
        raise FileNotFoundError(f"bundle must contain {WEIGHTS_FILE}, got no file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} must hold only tensors (loaded with weights_only=True), got: {str(e)[:300]}"
        ) from e
    if isinstance(obj, Mapping):
        wrapped = [k for k in STATE_DICT_WRAPPERS if isinstance(obj.get(k), Mapping)]
        if wrapped:
            obj = obj[wrapped[0]]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else []
        raise ValueError(
            f"{path} must hold a state dict (tensors only, optionally under one of "
            f"{list(STATE_DICT_WRAPPERS)}), got {type(obj).__name__} with keys {keys}"
        )
    return {str(k): v for k, v in obj.items()}


def check_state_dict(
    network: torch.nn.Module, state: Mapping[str, torch.Tensor], *, show: int = 5
) -> None:
    """Check every key and shape of ``state`` against ``network``'s own state dict.

    Raises:
        ValueError: listing missing keys, unexpected keys and shape mismatches (first ``show``).
    """
    ours = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    missing = sorted(ours.keys() - state.keys())
    unexpected = sorted(state.keys() - ours.keys())
    shapes = [
        f"{k} ours {ours[k]} bundle {tuple(state[k].shape)}"
        for k in sorted(ours.keys() & state.keys())
        if tuple(state[k].shape) != ours[k]
    ]
    problems = [
        f"{len(items)} {what} (first: {', '.join(items[:show])})"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if items
    ]
    if problems:
        raise ValueError(
            f"bundle state dict must match the {BUNDLE_NAME} RetinaNet ({len(ours)} tensors) "
            f"key for key and shape for shape, got {'; '.join(problems)}"
        )


def read_metadata(bundle: Path) -> dict[str, object]:
    """Return ``configs/metadata.json`` of a bundle.

    Raises:
        FileNotFoundError: the bundle has no ``configs/metadata.json``.
        ValueError: it is not a JSON object with a ``version``.
    """
    path = bundle / "configs" / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"bundle folder must contain configs/metadata.json, got none in {bundle}"
        )
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ValueError(f"{path} must be a JSON object with a string 'version', got {data!r:.200}")
    return data


def intended_use(metadata: Mapping[str, object]) -> str:
    """Return our notice followed by the bundle's own intended-use and disclaimer text, verbatim."""
    own = [
        f'Bundle {key.replace("_", " ")} (metadata.json): "{metadata[key]}"'
        for key in ("intended_use", "disclaimer")
        if isinstance(metadata.get(key), str) and metadata[key]
    ]
    return " ".join([DEFAULT_NOTICE, *own])


def check_configs(
    bundle: Path, network: NetworkSpec, detection: DetectionSpec, preprocess: PreprocessSpec
) -> list[str]:
    """Cross-check the bundle's inference/train configs that exist; return ``file: field`` names."""
    expected = expected_numbers(network, detection, preprocess)
    checked: list[str] = []
    for name in CONFIG_FILES:
        path = bundle / name
        if path.is_file():
            config = json.loads(path.read_text())
            if not isinstance(config, dict):
                raise ValueError(f"{path} must be a JSON object, got {type(config).__name__}")
            checked += [f"{name}: {f}" for f in check_bundle_config(config, expected, source=name)]
    if not checked:
        logger.warning(
            "bundle %s has no readable configs to cross-check; weights checked only", bundle
        )
    return checked


def import_bundle(
    bundle: Path,
    model_dir: Path,
    *,
    version: str | None = None,
    parity_shape: Sequence[int] = (64, 64, 32),
    tolerance: float = 1e-3,
) -> ModelCard:
    """Check a downloaded bundle, export it to ``model_dir/model.onnx`` and write ``model.yaml``.

    Args:
        bundle: the bundle folder (``configs/metadata.json``, ``models/model.pt``).
        model_dir: output model folder; an existing card's changelog is kept and extended.
        version: card version; defaults to the bundle's version.
        parity_shape: spatial size (i, j, k) of the random input for the torch vs ONNX check.
        tolerance: largest allowed absolute difference of any head output, torch vs ONNX Runtime.

    Raises:
        FileNotFoundError: missing metadata or weights.
        ValueError: a config value, state-dict key or shape that is not the bundle's, or parity
            worse than ``tolerance``.
    """
    metadata = read_metadata(bundle)
    bundle_version = str(metadata["version"])
    spec, detection, preprocess = NetworkSpec(), DetectionSpec(), PreprocessSpec()
    checked = check_configs(bundle, spec, detection, preprocess)
    state = load_state_dict(bundle / WEIGHTS_FILE)
    network = build_network(spec, detection)
    check_state_dict(network, state)
    network.load_state_dict(state)
    network.eval()

    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = model_dir / "model.onnx"
    staged = model_dir / "model.onnx.partial"  # an existing model stays intact until parity holds
    try:
        export_onnx(network, spec, str(staged), example_shape=parity_shape)
        rng = np.random.default_rng(0)
        x = rng.random((1, 1, *parity_shape), dtype=np.float32)
        max_diff = parity(network, staged, [x])
        if max_diff > tolerance:
            raise ValueError(
                f"torch vs ONNX parity must be <= {tolerance}, got max abs diff {max_diff:.2e}"
            )
        staged.replace(onnx_path)
    finally:
        staged.unlink(missing_ok=True)
    return _write_bundle_card(
        metadata,
        model_dir,
        version=version or bundle_version,
        sha256=sha256_file(onnx_path),
        provenance={
            "bundle_weights_sha256": sha256_file(bundle / WEIGHTS_FILE),
            "configs_cross_checked": checked,
            "parity_max_abs_diff": float(f"{max_diff:.2e}"),
        },
    )


def _write_bundle_card(
    metadata: Mapping[str, object],
    model_dir: Path,
    *,
    version: str,
    sha256: str,
    provenance: Mapping[str, object],
) -> ModelCard:
    bundle_version = str(metadata["version"])
    spec = NetworkSpec()
    source = f"MONAI bundle {BUNDLE_NAME} {bundle_version} imported by triage import-bundle"
    references = metadata.get("references")
    metrics: dict[str, object] = {}
    if isinstance(metadata.get("eval_metrics"), Mapping):
        metrics = {
            "bundle_reported": metadata["eval_metrics"],
            "note": "as reported by the bundle's metadata.json (LUNA16), not measured here; "
            "run `triage evaluate` for this engine's figures",
        }
    card = ModelCard(
        name=BUNDLE_NAME,
        version=version,
        task="lung_nodule",
        intended_use=intended_use(metadata),
        network=spec,
        detection=DetectionSpec(),
        preprocess=PreprocessSpec(),
        io=IOContract(output_names=tuple(output_names(len(spec.returned_layers) + 1))),
        weights=WeightsRef(file="model.onnx", sha256=sha256, format="onnx", source=source),
        training_data={
            "source": str(metadata.get("data_source", "LUNA16 (per the bundle)")),
            "bundle": BUNDLE_NAME,
            "bundle_version": bundle_version,
            "bundle_description": str(metadata.get("description", "")),
            **provenance,
        },
        metrics=metrics,
        citations=tuple(str(r) for r in references) if isinstance(references, list) else (),
        changelog=(
            *_previous_changelog(model_dir),
            ChangelogEntry(
                version=version,
                date=dt.date.today().isoformat(),
                change=f"imported MONAI bundle {BUNDLE_NAME} {bundle_version}",
            ),
        ),
    )
    write_card(card, model_dir)
    return card


def _dicts(obj: object) -> Iterator[Mapping[str, object]]:
    if isinstance(obj, Mapping):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v)


def _resolve(config: Mapping[str, object], value: object) -> object:
    """Follow a plain ``@key`` reference to a top-level key (nothing else is interpreted)."""
    if isinstance(value, str) and value.startswith("@") and value[1:] in config:
        return config[value[1:]]
    return value


def _expression_numbers(config: Mapping[str, object]) -> dict[str, object]:
    """Read keyword numbers out of the ``$`` expressions of the bundle's network and detector."""
    found: dict[str, object] = {}
    ops = config.get("detector_ops")
    for op in ops if isinstance(ops, list) else []:
        for call in ("set_box_selector_parameters", "set_sliding_window_inferer"):
            args = re.search(rf"{call}\((.*)\)", str(op))
            for key, number in re.findall(rf"(\w+)\s*=\s*({_NUMBER})\b", args[1] if args else ""):
                found[f"{call}.{key}"] = float(number)
    backbone = str(config.get("backbone", ""))
    for key in ("conv1_t_stride", "conv1_t_size"):
        values = re.search(rf"{key}\s*=\s*\[([^\]]*)\]", backbone)
        if values:
            found[f"backbone.{key}"] = [float(n) for n in re.findall(_NUMBER, values[1])]
    extractor = str(config.get("feature_extractor", ""))
    layers = re.search(r"resnet_fpn_feature_extractor\([^\[]*\[([^\]]*)\]", extractor)
    if layers:
        found["feature_extractor.returned_layers"] = [
            float(n) for n in re.findall(_NUMBER, layers[1])
        ]
    return found


def _same(theirs: object, ours: object) -> bool:
    """Compare config values: numbers within 1e-6 relative, sequences element-wise, else ==."""
    if isinstance(ours, str) or isinstance(theirs, str):
        return theirs == ours
    if isinstance(ours, (tuple, list)):
        return (
            isinstance(theirs, (tuple, list))
            and len(theirs) == len(ours)
            and all(_same(t, o) for t, o in zip(theirs, ours, strict=True))
        )
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return math.isclose(float(theirs), float(ours), rel_tol=1e-6, abs_tol=1e-9)
    return False


def _show(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)
