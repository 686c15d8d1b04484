"""robustft: reproduce robust fine-tuning papers (NoisyTune, SMART, NEFTune) and cite the numbers."""

__version__ = "0.1.0"
