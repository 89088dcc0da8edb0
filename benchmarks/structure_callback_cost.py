"""What the structure callback costs: its work after one validation epoch against one training epoch.

    .venv/bin/python benchmarks/structure_callback_cost.py [data=within_continent ...]

Trains the default model (or the given overrides) for one epoch with validation off, timing the fit, then
runs the callback's end-of-validation work (``StructureMetrics.on_validation_epoch_end``: the attention of
every layer and head over the validation people, the analysis' scorer, kNN-5 of the embedding) three
times and prints the best against the epoch, as a percentage, with the figures it logged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from seq2king.analysis.structure_callback import StructureMetrics
    from seq2king.training import build

    out = Path("/tmp/seq2king_structure_cost")
    with initialize_config_dir(config_dir=str(ROOT / "seq2king" / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=["logger=none", "trainer.max_epochs=1", "++trainer.limit_val_batches=0", "test=false",
                                 "++callbacks.rich_progress_bar=null", "~callbacks.structure", *sys.argv[1:]])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    dm, module, trainer = build(cfg)
    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    epoch = time.perf_counter() - t

    class _Trainer:  # what the callback reads from the trainer
        sanity_checking = False
        datamodule = dm

    logged: dict = {}
    module.log_dict = lambda d, **kw: logged.update(d)
    cb = StructureMetrics()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        cb.on_validation_epoch_end(_Trainer, module)
        times.append(time.perf_counter() - t)
    if cb._people is None:
        print("the cohort has no labels: the callback is off")
        return 0
    print(f"one training epoch (no validation) {epoch:.1f} s; the structure callback {min(times):.2f} s "
          f"(best of 3, first {times[0]:.2f} s) = {100 * min(times) / epoch:.1f}% of it; "
          f"{len(cb._people)} validation people; {logged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
