"""Measurements of a model: the layer linearity score (`retain probe linearity`)."""
