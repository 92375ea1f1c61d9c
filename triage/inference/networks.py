"""Build the torch RetinaNet a model card describes (training, export and the torch runtime only).

Serving with ONNX Runtime never imports this module, so the service needs no torch. The
bundle-compatible ResNet-50 network is built with MONAI's ``resnet_fpn_feature_extractor`` so its
state-dict keys are the bundle's; smaller networks use MONAI's ``BackboneWithFPN`` with a narrower
FPN, as the issue measured.
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    import torch
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.networks.retinanet_network import (
        RetinaNet,
        resnet_fpn_feature_extractor,
    )
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
    from monai.networks.blocks.backbone_fpn_utils import BackboneWithFPN
    from monai.networks.blocks.feature_pyramid_network import LastLevelMaxPool
    from monai.networks.nets import resnet
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "training and export need the 'train' extra: pip install 'triage[train]'"
    ) from e

from triage.inference.spec import DetectionSpec, NetworkSpec


def build_backbone(spec: NetworkSpec) -> resnet.ResNet:
    """Return the MONAI ResNet backbone of the spec (single-channel input)."""
    return resnet.ResNet(
        block=spec.block,
        layers=list(spec.layers),
        block_inplanes=list(spec.block_inplanes),
        spatial_dims=spec.spatial_dims,
        n_input_channels=1,
        conv1_t_size=spec.conv1_t_size,  # type: ignore[arg-type]  # MONAI annotates tuple[int] for tuple[int, ...]
        conv1_t_stride=spec.conv1_t_stride,  # type: ignore[arg-type]
    )


def build_network(spec: NetworkSpec, detection: DetectionSpec) -> RetinaNet:
    """Return a MONAI ``RetinaNet`` for the spec; its head has ``detection.num_anchors`` anchors."""
    backbone = build_backbone(spec)
    if spec.fpn_channels == 256:
        extractor = resnet_fpn_feature_extractor(
            backbone, spec.spatial_dims, False, list(spec.returned_layers), None
        )
    else:
        stage2 = backbone.in_planes // 8
        extractor = BackboneWithFPN(
            backbone,
            {f"layer{k}": str(v) for v, k in enumerate(spec.returned_layers)},
            [stage2 * 2 ** (i - 1) for i in spec.returned_layers],
            spec.fpn_channels,
            extra_blocks=LastLevelMaxPool(spec.spatial_dims),
            spatial_dims=spec.spatial_dims,
        )
    return RetinaNet(
        spatial_dims=spec.spatial_dims,
        num_classes=spec.num_classes,
        num_anchors=detection.num_anchors,
        feature_extractor=extractor,
        size_divisible=list(detection.size_divisible),
    )


def build_anchor_generator(detection: DetectionSpec) -> AnchorGeneratorWithAnchorShape:
    """Return MONAI's anchor generator with the card's anchor shapes and scales."""
    return AnchorGeneratorWithAnchorShape(
        feature_map_scales=list(detection.feature_map_scales),
        base_anchor_shapes=[list(s) for s in detection.base_anchor_shapes],
    )


def build_detector(
    spec: NetworkSpec, detection: DetectionSpec, network: RetinaNet | None = None
) -> RetinaNetDetector:
    """Return MONAI's ``RetinaNetDetector`` configured exactly per the card (parity reference)."""
    det = RetinaNetDetector(
        network=network if network is not None else build_network(spec, detection),
        anchor_generator=build_anchor_generator(detection),
        spatial_dims=spec.spatial_dims,
        num_classes=spec.num_classes,
        size_divisible=list(detection.size_divisible),
    )
    det.set_box_coder_weights(detection.box_coder_weights)  # type: ignore[arg-type]  # MONAI: tuple[float]
    det.set_box_selector_parameters(
        score_thresh=detection.score_thresh,
        topk_candidates_per_level=detection.topk_candidates_per_level,
        nms_thresh=detection.nms_thresh,
        detections_per_img=detection.detections_per_img,
    )
    det.set_sliding_window_inferer(
        roi_size=list(detection.roi_size),
        overlap=detection.overlap,
        sw_batch_size=1,
        mode="constant",
        device="cpu",
    )
    return det


class HeadOutputs(torch.nn.Module):
    """Wrap a RetinaNet to return a flat tuple: classification maps, then box-regression maps."""

    def __init__(self, network: RetinaNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(image)
        return (*out["classification"], *out["box_regression"])


def output_names(n_levels: int) -> list[str]:
    """Return the ONNX output names: ``cls_0..`` then ``box_0..``."""
    return [f"cls_{i}" for i in range(n_levels)] + [f"box_{i}" for i in range(n_levels)]


def export_onnx(
    network: RetinaNet, spec: NetworkSpec, path: str, *, example_shape: Sequence[int]
) -> None:
    """Export the head outputs to ONNX with dynamic spatial axes (opset 17)."""
    network = network.eval()
    n_levels = len(spec.returned_layers) + 1
    wrapper = HeadOutputs(network).eval()
    example = torch.zeros((1, 1, *example_shape), dtype=torch.float32)
    spatial = {0: "batch", **{2 + d: f"s{d}" for d in range(spec.spatial_dims)}}
    names = output_names(n_levels)
    dynamic = {
        "image": spatial,
        **{
            n: {0: "batch", **{2 + d: f"{n}_s{d}" for d in range(spec.spatial_dims)}} for n in names
        },
    }
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            path,
            input_names=["image"],
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
