"""`qtool serve`: a verified bundle behind the Open Inference Protocol (v2 REST).

Modules:
  protocol.py  the v2 payloads: request checks, tensor metadata, responses (no HTTP)
  model.py     the served model: a session over verified bytes; infer and classify
  guard.py     re-verification of held bytes and disk on a schedule; 503, repair, reload
  metrics.py   Prometheus text format
  app.py       the Starlette routes, body limits, one error object per bad request
  server.py    verify before listening, uvicorn, graceful stop; RunningServer for tests

Starlette and uvicorn come with `pip install 'qtool[serve]'`; nothing here is imported by
the rest of qtool, and only `commands/serve.py` imports this package.
"""
