"""Training face-embedding CNNs by identity classification."""
