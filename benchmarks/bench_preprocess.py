"""DICOM -> Volume -> network input on the real LIDC-IDRI-0001 CT (CPU).

python -m benchmarks.bench_preprocess [--repeat 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._common import shared_data, summary, timed, write_result
from triage.dicom.reader import scan_folder
from triage.dicom.series import load_ct_volume
from triage.inference.card import load_card
from triage.inference.lung_nodule import preprocess


def main() -> None:
    """Time each stage separately and print medians."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model-dir", type=Path, default=Path("models/lung_nodule_det"))
    args = p.parse_args()
    data = shared_data()
    series_dir = next(
        d
        for d in (data / "lidc-idri-0001" / "series", data / "lidc-idri-0001", data / "series")
        if d.is_dir()
    )
    card = load_card(args.model_dir)
    (study,) = scan_folder(series_dir).studies
    series = study.series[0]
    volume = load_ct_volume(series)
    result = {
        "input": f"LIDC-IDRI-0001, {series.n_instances} slices 512x512",
        "scan_folder": summary(timed(lambda: scan_folder(series_dir), repeat=args.repeat)),
        "load_ct_volume": summary(timed(lambda: load_ct_volume(series), repeat=args.repeat)),
        "preprocess_to_card_grid": summary(
            timed(lambda: preprocess(volume, card.preprocess), repeat=args.repeat)
        ),
        "card_spacing_mm": list(card.preprocess.target_spacing_mm),
        "command": "python -m benchmarks.bench_preprocess",
    }
    write_result("preprocess", result)


if __name__ == "__main__":
    main()
