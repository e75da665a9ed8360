"""Input/output outside the model math: images, video files, weights, hub downloads."""
