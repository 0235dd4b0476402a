"""Package trained runs as the bundled models: `python -m colorizer.bundle runs/generic runs/dogs`.

Each run folder's model is stored in fp16 (half the size; inference runs in bf16 or fp32 anyway) as
colorizer/weights/<run name>.safetensors with its JSON config, which is what `--model <name>` loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from colorizer import checkpoint

WEIGHTS_DIR = Path(__file__).parent / "weights"


def bundle(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    model, config = checkpoint.load_model(run_dir)
    config = {key: value for key, value in config.items() if key != "format"}
    return checkpoint.save_model(WEIGHTS_DIR / run_dir.name, model, {**config, "name": run_dir.name}, half=True)


def main(argv: list[str]) -> int:
    for run_dir in argv:
        path = bundle(run_dir)
        print(f"{run_dir} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
