"""mlx_video: Wan 2.1/2.2 and LTX-2/2.3 video diffusion in MLX."""
__version__ = "0.1.0"
