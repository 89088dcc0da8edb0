"""Analyse a trained run's attention: connectivity, baselines, plots, BERTViz, W&B.

    python analyze.py run_dir=outputs/train/runs/<run>
    python analyze.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt split=val
    python analyze.py -m run_dir=... analysis.inversion=none,complement,negate
    python analyze.py compare=outputs/train/multiruns/<sweep>   # one table for a sweep

Writes <run_dir>/analysis/: summary.json, connectivity.csv, PNG plots,
bertviz_head_view.html and bertviz_model_view.html, and logs them to W&B.
"""

import hydra
from omegaconf import DictConfig

from seq2king.commands import analyze_command
from seq2king.errors import exit_cleanly


@hydra.main(version_base="1.3", config_path="seq2king/conf", config_name="analyze.yaml")
def main(cfg: DictConfig) -> None:
    analyze_command(cfg)


if __name__ == "__main__":
    with exit_cleanly():
        main()
