"""Triton model repositories generated from model cards: ``config.pbtxt`` and the folder layout.

The card (STYLE H18) is the only source: the tensor names, dtype and dims in ``config.pbtxt`` are
derived from it, and its version and weights sha256 travel in the config's ``parameters`` so that
:class:`~triage.inference.runtimes.triton.TritonRuntime` can refuse a server that serves other
weights than the card names. No tritonclient import here: this module is pure text and files.

Two backends:

- ``onnxruntime`` (``platform: "onnxruntime_onnx"``): what a Triton server with the ONNX Runtime
  backend (the NGC ``tritonserver`` images) runs. The committed
  ``models/<name>/triton/config.pbtxt`` use it.
- ``python``: Triton's Python backend running the same ``model.onnx`` with onnxruntime inside the
  server (:data:`PYTHON_BACKEND_MODEL`). The tritonserver bundled in the ``nvidia-pytriton`` wheel
  has only this backend; the integration tests use it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Literal

from triage.inference.card import ModelCard, load_card

Backend = Literal["onnxruntime", "python"]
InstanceKind = Literal["KIND_CPU", "KIND_GPU"]

VERSION_DIR = "1"  # Triton versions are integers; the card's version is a parameter instead
CARD_VERSION_KEY = "triage_card_version"
WEIGHTS_SHA256_KEY = "triage_weights_sha256"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEADER = (
    "# Generated from model.yaml by triage.inference.triton_config.render_config_pbtxt; "
    "do not edit by hand."
)

PYTHON_BACKEND_MODEL = '''\
"""Triton Python-backend model (written by triage.inference.triton_config): model.onnx, onnxruntime.

Refuses to load when model.onnx differs from the sha256 in config.pbtxt (the card's). Tensors
cross the stub through DLPack: the Tensor(name, ndarray) and as_numpy() paths of Python-backend
stubs built against the numpy 1 C API return empty output buffers under numpy 2.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        expected = config["parameters"]["triage_weights_sha256"]["string_value"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise pb_utils.TritonModelException(
                f"model.onnx must have sha256 {expected[:12]}..., got {digest[:12]}..."
            )
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
                image = np.from_dlpack(tensor)
                results = self.session.run(self.output_names, {self.input_name: image})
                arrays = [np.ascontiguousarray(r, dtype=np.float32) for r in results]
                tensors = [
                    pb_utils.Tensor.from_dlpack(name, array)
                    for name, array in zip(self.output_names, arrays)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # one failed request must not fail the others
                error = pb_utils.TritonError(f"{type(e).__name__}: {str(e)[:300]}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses
'''


def tensor_dims(card: ModelCard) -> dict[str, tuple[int, ...]]:
    """Return the dims of the input and of every output, ``-1`` where a dim varies.

    The shape rule of the card's RetinaNet head: the input is ``(batch, 1, *spatial)``; each
    ``cls_<level>`` has ``anchors * classes`` channels and each ``box_<level>`` has
    ``anchors * 2 * spatial_dims``, at a spatial size that follows the image.

    Raises:
        ValueError: an output name that is neither ``cls_*`` nor ``box_*``.
    """
    spatial = (-1,) * card.network.spatial_dims
    anchors = card.detection.num_anchors
    channels = {
        "cls_": anchors * card.network.num_classes,
        "box_": anchors * 2 * card.network.spatial_dims,
    }
    dims: dict[str, tuple[int, ...]] = {card.io.input_name: (-1, 1, *spatial)}
    for name in card.io.output_names:
        prefix = name[:4]
        if prefix not in channels:
            raise ValueError(f"output names must start with 'cls_' or 'box_', got {name!r}")
        dims[name] = (-1, channels[prefix], *spatial)
    return dims


def render_config_pbtxt(
    card: ModelCard,
    *,
    backend: Backend = "onnxruntime",
    instance_kind: InstanceKind = "KIND_CPU",
    instance_count: int = 1,
) -> str:
    """Return the Triton ``config.pbtxt`` of a card (text protobuf; batch dim in ``dims``).

    >>> from triage.inference.card import ModelCard
    >>> from triage.inference.spec import DetectionSpec, NetworkSpec, PreprocessSpec
    >>> card = ModelCard(name="demo", version="1.2.0", task="lung_nodule", intended_use="tests",
    ...     network=NetworkSpec(), detection=DetectionSpec(), preprocess=PreprocessSpec(),
    ...     weights={"file": "model.onnx", "sha256": "0" * 64})
    >>> text = render_config_pbtxt(card)
    >>> print(text[text.index("platform"):text.index("output")].strip())
    platform: "onnxruntime_onnx"
    max_batch_size: 0
    input [
      {
        name: "image"
        data_type: TYPE_FP32
        dims: [ -1, 1, -1, -1, -1 ]
      }
    ]
    >>> 'dims: [ -1, 18, -1, -1, -1 ]' in text  # box_0: 3 anchors x 6 box coordinates
    True

    Raises:
        ValueError: a card name Triton cannot use as a folder name, or ``instance_count < 1``.
    """
    if not _NAME.match(card.name):
        raise ValueError(
            f"model name must be a Triton model name ([A-Za-z0-9_.-]), got {card.name!r}"
        )
    if instance_count < 1:
        raise ValueError(f"instance_count must be >= 1, got {instance_count}")
    dims = tensor_dims(card)
    engine = 'platform: "onnxruntime_onnx"' if backend == "onnxruntime" else 'backend: "python"'
    inputs = [_tensor(card.io.input_name, dims[card.io.input_name])]
    outputs = [_tensor(name, dims[name]) for name in card.io.output_names]
    lines = [
        _HEADER,
        f'name: "{card.name}"',
        engine,
        "max_batch_size: 0",
        "input [",
        ",\n".join(inputs),
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "instance_group [",
        "  {",
        f"    count: {instance_count}",
        f"    kind: {instance_kind}",
        "  }",
        "]",
        _parameter(CARD_VERSION_KEY, card.version),
        _parameter(WEIGHTS_SHA256_KEY, card.weights.sha256),
    ]
    return "\n".join(lines) + "\n"


def write_model_repository(
    models_dir: Path,
    out_dir: Path,
    *,
    backend: Backend = "onnxruntime",
    instance_kind: InstanceKind = "KIND_CPU",
) -> list[Path]:
    """Write a Triton model repository for every model folder under ``models_dir``.

    Each card becomes ``<out_dir>/<name>/config.pbtxt`` and ``<out_dir>/<name>/1/model.onnx``
    (plus ``1/model.py`` for the Python backend). Weights are sha256-verified before copying.

    Returns:
        The model folders written, in name order of the source folders.

    Raises:
        ModelUnavailable: a card is invalid or its weights are missing or fail the checksum.
        ValueError: no cards in ``models_dir``, a card with non-ONNX weights, or two cards with
            the same name.
    """
    folders = sorted(p.parent for p in models_dir.glob("*/model.yaml"))
    if not folders:
        raise ValueError(
            f"models_dir must contain <name>/model.yaml folders, got none in {models_dir}"
        )
    written: list[Path] = []
    for folder in folders:
        card = load_card(folder)
        if card.weights.format != "onnx":
            raise ValueError(
                f"Triton serving needs ONNX weights, got format {card.weights.format!r} for model "
                f"{card.name!r}; export it to ONNX first"
            )
        weights = card.verify_weights(folder)
        target = out_dir / card.name
        if target in written:
            raise ValueError(f"model names must be unique in {models_dir}, got {card.name!r} twice")
        version = target / VERSION_DIR
        version.mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights, version / "model.onnx")
        if backend == "python":
            (version / "model.py").write_text(PYTHON_BACKEND_MODEL)
        text = render_config_pbtxt(card, backend=backend, instance_kind=instance_kind)
        (target / "config.pbtxt").write_text(text)
        written.append(target)
    return written


def _tensor(name: str, dims: tuple[int, ...]) -> str:
    return "\n".join(
        [
            "  {",
            f'    name: "{name}"',
            "    data_type: TYPE_FP32",
            f"    dims: [ {', '.join(str(d) for d in dims)} ]",
            "  }",
        ]
    )


def _parameter(key: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{escaped}" }}\n}}'
