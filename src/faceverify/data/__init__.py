"""Datasets: folder-per-identity image sets and a synthetic face-like generator."""
