"""Cohorts and sequences of people for training (``Seq2KingDataModule``)."""

from seq2king.data.cohort import Cohort, load_genotypes, load_king, load_simulated
from seq2king.data.datamodule import Scaler, Seq2KingDataModule, SequenceSet

__all__ = ["Cohort", "Scaler", "Seq2KingDataModule", "SequenceSet", "load_genotypes", "load_king",
           "load_simulated"]
