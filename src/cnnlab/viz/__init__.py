"""Figures from models, tensors, histories and analysis results.

Every function returns a matplotlib Figure and never trains; ``save_figure`` writes a PNG.
"""
