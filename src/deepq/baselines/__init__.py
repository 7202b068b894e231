"""Baselines and classical/boosting plug-ins; each is a FoldModel (deepq.dataset.context)."""
