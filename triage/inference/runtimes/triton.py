"""Triton Inference Server backend (needs the 'triton' extra): the card's model on a remote server.

Talks KServe v2 over gRPC (``tritonclient.grpc``, whose client is safe to share between the
service's worker threads; the HTTP client is not). The address is ``host:port`` of Triton's gRPC
endpoint (8001 by default), optionally written ``grpc://host:port``.

The server holds the weights, so this runtime enforces the card (STYLE H18) against what the server
reports: the model named like the card must be READY, its tensors must carry the card's names and
FP32, and the config written by
:func:`~triage.inference.triton_config.render_config_pbtxt` must name the card's weights sha256.
Anything else is :class:`ModelUnavailable` with the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

try:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the Triton runtime needs the 'triton' extra: pip install 'triage[triton]'"
    ) from e

from triage.core.errors import InferenceFailed, ModelUnavailable
from triage.inference.card import ModelCard
from triage.inference.runtime import RuntimeOptions
from triage.inference.triton_config import WEIGHTS_SHA256_KEY

CONNECT_TIMEOUT_S = 10.0


class TritonRuntime:
    """A model served by Triton whose name, tensors and weights checksum match the card."""

    def __init__(self, card: ModelCard, model_dir: Path, opts: RuntimeOptions) -> None:
        del model_dir  # the server holds the weights; their sha256 is checked in its config
        address = _grpc_address(opts.triton_url)
        self._model = card.name
        self._input = card.io.input_name
        self._outputs = list(card.io.output_names)
        self._provider = f"triton:{address}"
        try:
            self._client = grpcclient.InferenceServerClient(url=address)
            live = self._client.is_server_live(client_timeout=CONNECT_TIMEOUT_S)
        except InferenceServerException as e:
            raise ModelUnavailable(
                f"Triton server at {address} must be reachable, got {_reason(e)}; start "
                "tritonserver or point TRIAGE_TRITON_URL at its gRPC port"
            ) from e
        if not live:
            raise ModelUnavailable(f"Triton server at {address} must be live, got not live")
        self._check_served_model(card, address)

    def _check_served_model(self, card: ModelCard, address: str) -> None:
        try:
            ready = self._client.is_model_ready(self._model, client_timeout=CONNECT_TIMEOUT_S)
            if not ready:
                raise ModelUnavailable(
                    f"Triton model {self._model!r} must be READY at {address}, got not ready; "
                    "add it to the server's model repository (triage.inference.triton_config."
                    "write_model_repository) and check the server log"
                )
            meta = self._client.get_model_metadata(self._model, as_json=True)
            config = self._client.get_model_config(self._model, as_json=True)["config"]
        except InferenceServerException as e:
            raise ModelUnavailable(
                f"Triton model {self._model!r} at {address} must answer, got {_reason(e)}"
            ) from e
        served = (
            [i["name"] for i in meta.get("inputs", [])],
            [o["name"] for o in meta.get("outputs", [])],
        )
        types = {t["datatype"] for t in [*meta.get("inputs", []), *meta.get("outputs", [])]}
        if served[0] != [self._input] or sorted(served[1]) != sorted(self._outputs):
            raise ModelUnavailable(
                f"Triton model {self._model!r} I/O must match the card "
                f"({self._input} -> {self._outputs}), got {served[0]} -> {served[1]}"
            )
        if types != {"FP32"}:
            raise ModelUnavailable(
                f"Triton model {self._model!r} tensors must be FP32, got {sorted(types)}"
            )
        sha = config.get("parameters", {}).get(WEIGHTS_SHA256_KEY, {}).get("string_value", "")
        if sha != card.weights.sha256:
            raise ModelUnavailable(
                f"Triton model {self._model!r} must serve weights sha256 "
                f"{card.weights.sha256[:12]}…, got {sha[:12] or 'none'}…; regenerate the model "
                "repository from this card (write_model_repository) and reload the server"
            )

    @property
    def provider(self) -> str:
        """Return ``triton:<host:port>``."""
        return self._provider

    def infer(
        self, inputs: Mapping[str, npt.NDArray[np.float32]]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Run one forward pass on the server; a failed request becomes :class:`InferenceFailed`."""
        requests = []
        for name, array in inputs.items():
            data = np.ascontiguousarray(array, dtype=np.float32)
            request = grpcclient.InferInput(name, list(data.shape), "FP32")
            request.set_data_from_numpy(data)
            requests.append(request)
        wanted = [grpcclient.InferRequestedOutput(n) for n in self._outputs]
        try:
            result = self._client.infer(self._model, requests, outputs=wanted)
        except InferenceServerException as e:
            raise InferenceFailed(f"Triton inference failed: {_reason(e)}") from e
        out: dict[str, npt.NDArray[np.float32]] = {}
        for name in self._outputs:
            array = result.as_numpy(name)
            if array is None:
                raise InferenceFailed(f"Triton response must contain output {name!r}, got none")
            out[name] = np.asarray(array, dtype=np.float32)
        return out


def _grpc_address(url: str | None) -> str:
    """Return ``host:port`` from a ``host:port`` or ``grpc://host:port`` setting.

    Raises:
        ModelUnavailable: no address, or an HTTP(S) one (this runtime speaks gRPC).
    """
    if not url:
        raise ModelUnavailable(
            "runtime triton needs the server's gRPC address, got none; set TRIAGE_TRITON_URL "
            "(e.g. localhost:8001)"
        )
    address = url.removeprefix("grpc://").rstrip("/")
    if "://" in address or ":" not in address:
        raise ModelUnavailable(
            f"TRIAGE_TRITON_URL must be Triton's gRPC address host:port (default port 8001), "
            f"got {url!r}"
        )
    return address


def _reason(e: InferenceServerException) -> str:
    """Return the server's status and message, shortened."""
    status = e.status() or type(e).__name__
    return f"{status}: {(e.message() or '')[:200]}"
