"""Train Seq2KING. With no arguments: the embedded simulated cohort, our default model.

    python train.py                                   # default cohort and model
    python train.py experiment=paper                  # the paper's setup
    python train.py data=plink data.bfile=PREFIX data.labels=TSV [data.label_column=population]
    python train.py -m model.depth=2,4,6 model.heads=1,2,4,8   # a sweep
    python train.py -m hparams_search=optuna          # TPE search on val/loss
    python train.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt   # resume

Outputs go to the Hydra run directory: checkpoints/, .hydra/, split.json,
metrics.json, csv/ and the W&B run (offline unless you are logged in). The configs
are the package's own (seq2king/conf/).
"""

import sys

import hydra
from omegaconf import DictConfig

from seq2king.commands import train_command
from seq2king.errors import exit_cleanly
from seq2king.training import check_data_keys


@hydra.main(version_base="1.3", config_path="seq2king/conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float:
    return train_command(cfg)


if __name__ == "__main__":
    with exit_cleanly():
        check_data_keys(sys.argv[1:])
        main()
