"""The runtime seam: one Protocol, one explicit dict of factories (STYLE H11); numpy in and out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from triage.inference.card import ModelCard


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How to run: execution provider preference, threads, Triton address."""

    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    threads: int = 0  # 0 = the runtime's default
    triton_url: str | None = None


class Runtime(Protocol):
    """Run the network of a card: named float32 inputs -> named outputs."""

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run one forward pass."""
        ...

    @property
    def provider(self) -> str:
        """Return what actually runs the model (e.g. ``CPUExecutionProvider``)."""
        ...


RuntimeFactory = Callable[[ModelCard, Path, RuntimeOptions], Runtime]


def _onnx(card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> Runtime:
    from triage.inference.runtimes.onnx import OnnxRuntime  # noqa: PLC0415 - optional heavy import

    return OnnxRuntime(card, model_dir, opts)


def _torch(card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> Runtime:
    from triage.inference.runtimes.torch import TorchRuntime  # noqa: PLC0415 - needs the train extra

    return TorchRuntime(card, model_dir, opts)


def _triton(card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> Runtime:
    from triage.inference.runtimes.triton import TritonRuntime  # noqa: PLC0415 - needs the triton extra

    return TritonRuntime(card, model_dir, opts)


RUNTIMES: dict[str, RuntimeFactory] = {"onnx": _onnx, "torch": _torch, "triton": _triton}


def make_runtime(kind: str, card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> Runtime:
    """Return a runtime of the given kind for a verified card."""
    try:
        factory = RUNTIMES[kind]
    except KeyError:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {kind!r}") from None
    return factory(card, model_dir, opts)


def make_patch_classifier(
    card: ModelCard, model_dir: Path, opts: RuntimeOptions
) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None:
    """Return the card's rescoring classifier (ONNX Runtime, any detector runtime), or None.

    Raises:
        ModelUnavailable: its file is missing, has another sha256, or does not load.
    """
    if card.rescoring is None:
        return None
    from triage.inference.runtimes.onnx import OnnxPatchClassifier  # noqa: PLC0415 - heavy import

    return OnnxPatchClassifier(card.rescoring, model_dir, opts)


def head_function(
    runtime: Runtime, card: ModelCard
) -> Callable[[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """Return the ``image -> [cls_*, box_*]`` callable that :func:`.detector.detect` takes."""
    names = card.io.output_names

    def head(image: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        out = runtime.infer({card.io.input_name: image})
        return [out[n] for n in names]

    return head
