"""``kubetune ui``: a web dashboard over the SDK client (jobs, live curves, logs, runtimes).

Needs the ``ui`` extra (``pip install 'kubetune[ui]'``: FastAPI and uvicorn).
"""
