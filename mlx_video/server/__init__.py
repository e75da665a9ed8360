"""``mlx_video serve``: a local server with an OpenAI-style video API (:mod:`.app`), a persisted job queue
(:mod:`.jobs`), one worker that keeps models loaded (:mod:`.runner`) and a page in the browser (``static/``).
Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart)."""
