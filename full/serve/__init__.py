"""``cf-ref full serve``: a small web app that streams generated video to a browser and lets the user steer it.

* :mod:`full.serve.protocol` — the WebSocket messages (validated with pydantic) and the server's limits;
* :mod:`full.serve.slot` — one generation at a time per model, a bounded waiting line, "busy" beyond it;
* :mod:`full.serve.app` — the FastAPI app: the static page, ``/info``, and the ``/ws`` stream endpoint;
* ``static/`` — the page (prompt box, start/stop, prompt change while playing, steps, seed, canvas, FPS and
  latency read-outs).

Needs the ``serve`` extra (``pip install -e ".[serve]"``: FastAPI, uvicorn, websockets, Pillow).
"""
