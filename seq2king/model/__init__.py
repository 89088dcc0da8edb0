"""The Seq2KING transformer and its LightningModule."""

from seq2king.model.losses import masked_pair_mse
from seq2king.model.module import Seq2KingModule
from seq2king.model.transformer import Seq2King, Seq2KingConfig

__all__ = ["Seq2King", "Seq2KingConfig", "Seq2KingModule", "masked_pair_mse"]
