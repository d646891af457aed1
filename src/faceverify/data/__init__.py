"""Data to learn and test with: a synthetic face-like dataset generator (``synthetic``).

May import: nothing of faceverify; it writes image folders that the other steps read.
"""
