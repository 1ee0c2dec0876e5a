"""Charades v1 temporal action localisation: official-format files, the binary feature cache, the official per-frame mAP and a synthetic generator."""
