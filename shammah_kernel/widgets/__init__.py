"""Jupyter widgets: one small traits module and one ESM file each."""
