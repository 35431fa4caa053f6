"""Training losses: segmentation (Dice + cross-entropy) and generation."""
