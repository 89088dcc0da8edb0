"""seq2king: population structure from KING-robust kinship and transformer attention."""

__version__ = "0.1.0"
