"""``python -m mlx_video ...``: the same app as the ``mlx_video`` command."""

from mlx_video.cli import main

if __name__ == "__main__":
    main()
