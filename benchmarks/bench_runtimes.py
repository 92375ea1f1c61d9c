"""Network forward pass: ONNX Runtime vs PyTorch (and CUDA when present) on the same input.

python -m benchmarks.bench_runtimes [--repeat 5] [--shape 352 352 160]
Checks the outputs agree before timing; prints medians and the ONNX/torch ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks._common import summary, timed, write_result
from triage.inference.card import load_card
from triage.inference.runtime import RuntimeOptions, make_runtime


def main() -> None:
    """Time one forward pass per runtime / device available here."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--model-dir", type=Path, default=Path("models/lung_nodule_det"))
    p.add_argument("--shape", type=int, nargs="+", default=[352, 352, 160])
    args = p.parse_args()
    card = load_card(args.model_dir)
    x = np.random.default_rng(0).random((1, 1, *args.shape), dtype=np.float32)
    onnx_cpu = make_runtime("onnx", card, args.model_dir, RuntimeOptions())
    runs = {"onnx_cpu": onnx_cpu}
    if "CUDAExecutionProvider" in ort.get_available_providers():
        runs["onnx_cuda"] = make_runtime(
            "onnx", card, args.model_dir, RuntimeOptions(device="cuda")
        )
    reference = onnx_cpu.infer({"image": x})
    result: dict[str, object] = {
        "model": card.name,
        "version": card.version,
        "input_shape": args.shape,
    }
    for name, rt in runs.items():
        out = rt.infer({"image": x})
        result[f"{name}_max_abs_diff_vs_onnx_cpu"] = max(
            float(np.abs(out[k] - reference[k]).max()) for k in out
        )
        result[name] = summary(timed(lambda rt=rt: rt.infer({"image": x}), repeat=args.repeat))
    result["command"] = "python -m benchmarks.bench_runtimes"
    write_result("runtimes", result)


if __name__ == "__main__":
    main()
