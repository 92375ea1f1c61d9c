"""PyTorch backend (needs the 'train' extra): runs a card's network from a verified state dict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

try:
    import torch
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "the torch runtime needs the 'train' extra: pip install 'triage[train]'"
    ) from e

from triage.core.errors import InferenceFailed, ModelUnavailable
from triage.inference.card import ModelCard
from triage.inference.networks import HeadOutputs, build_network, output_names
from triage.inference.runtime import RuntimeOptions


class TorchRuntime:
    """Loads ``torch_state_dict`` weights with ``weights_only=True`` only (never pickle code)."""

    def __init__(self, card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> None:
        if card.weights.format != "torch_state_dict":
            raise ModelUnavailable(
                f"torch runtime needs weights format torch_state_dict, got {card.weights.format}"
            )
        path = card.verify_weights(model_dir)
        network = build_network(card.network, card.detection)
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state.get("network", state) if isinstance(state, dict) else state)
        self._device = torch.device(opts.device if opts.device != "cpu" else "cpu")
        self._module = HeadOutputs(network).eval().to(self._device)
        self._names = output_names(len(card.network.returned_layers) + 1)

    @property
    def provider(self) -> str:
        """Return the torch device."""
        return f"torch:{self._device}"

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run one forward pass under ``no_grad``."""
        (array,) = inputs.values()
        try:
            with torch.no_grad():
                out = self._module(torch.from_numpy(np.ascontiguousarray(array)).to(self._device))
        except RuntimeError as e:
            raise InferenceFailed(f"torch failed: {str(e)[:300]}") from e
        return {
            n: o.detach().cpu().numpy().astype(np.float32)
            for n, o in zip(self._names, out, strict=True)
        }
