"""ONNX Runtime backend: the default serving path (no torch). CUDA when asked and available."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from triage.core.errors import InferenceFailed, ModelUnavailable
from triage.inference.card import ModelCard, RescoringSpec, verified_file
from triage.inference.runtime import RuntimeOptions

logger = logging.getLogger(__name__)


class OnnxRuntime:
    """An ``InferenceSession`` over sha256-verified weights whose I/O names match the card."""

    def __init__(self, card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> None:
        self._session = _session(card.verify_weights(model_dir), opts)
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [card.io.input_name] or outputs != list(card.io.output_names):
            raise ModelUnavailable(
                f"ONNX I/O must match the card "
                f"({card.io.input_name} -> {list(card.io.output_names)}), "
                f"got {inputs} -> {outputs}"
            )
        self._outputs = outputs

    @property
    def provider(self) -> str:
        """Return the first execution provider the session really uses."""
        return str(self._session.get_providers()[0])

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run one forward pass; any runtime error becomes :class:`InferenceFailed`."""
        try:
            results = self._session.run(
                self._outputs, {k: np.ascontiguousarray(v) for k, v in inputs.items()}
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise InferenceFailed(f"onnxruntime failed: {type(e).__name__}: {str(e)[:300]}") from e
        return {
            n: np.asarray(r, dtype=np.float32) for n, r in zip(self._outputs, results, strict=True)
        }


class OnnxPatchClassifier:
    """The card's rescoring classifier (sha256-verified): patches -> logits, in ONNX Runtime."""

    def __init__(self, spec: RescoringSpec, model_dir: Path, opts: RuntimeOptions) -> None:
        path = verified_file(model_dir, spec.file, spec.sha256, what="rescoring classifier")
        self._session = _session(path, opts)
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [spec.input_name] or outputs != [spec.output_name]:
            raise ModelUnavailable(
                f"rescoring ONNX I/O must match the card ({spec.input_name} -> "
                f"[{spec.output_name}]), got {inputs} -> {outputs}"
            )
        self._input = spec.input_name

    def __call__(self, patches: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return one logit per patch; any runtime error becomes :class:`InferenceFailed`."""
        try:
            (logits,) = self._session.run(None, {self._input: np.ascontiguousarray(patches)})
        except Exception as e:  # onnxruntime raises its own exception types
            raise InferenceFailed(
                f"onnxruntime failed in the rescoring classifier: {type(e).__name__}: "
                f"{str(e)[:300]}"
            ) from e
        return np.asarray(logits, dtype=np.float32).reshape(-1)


def _session(path: Path, opts: RuntimeOptions) -> ort.InferenceSession:
    """Open an ``InferenceSession`` on the device ``opts`` asks for (CUDA only when present).

    Raises:
        ModelUnavailable: CUDA asked for without onnxruntime-gpu and a GPU, or a file that does
            not load.
    """
    providers: list[object] = ["CPUExecutionProvider"]
    if opts.device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelUnavailable(
                "device cuda needs onnxruntime-gpu with a visible GPU, got providers "
                f"{ort.get_available_providers()}; install 'triage[gpu]' or use --device cpu"
            )
        index = int(opts.device.split(":")[1]) if ":" in opts.device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    so = ort.SessionOptions()
    if opts.threads:
        so.intra_op_num_threads = opts.threads
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelUnavailable(f"ONNX model {path.name} must load in onnxruntime, got: {e}") from e
