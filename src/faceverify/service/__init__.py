"""The HTTP service: the library's verification and galleries over the network, and a page.

``app`` holds the application factory; ``settings`` what an operator chooses (limits,
batching, faces, where galleries and keys live); ``keys`` API keys (stored hashed; no
FastAPI needed, so the CLI can manage them); ``errors`` the one mapping from faceverify's
exceptions to HTTP statuses; ``middleware`` body limits, deadlines, authentication and
headers; ``batcher`` the dynamic batcher that lets concurrent requests share a forward
pass; ``uploads`` reading uploads within the limits; ``state`` what the lifespan opens
once (model, batcher, galleries); ``deps`` what routes need from a request; ``routers``
one module per resource; ``schemas`` the JSON shapes; ``static`` the web page.

This package adds transport only: detection, alignment, embedding, verification and
gallery work is done by the library's own functions. FastAPI and uvicorn (part of the
base install) are needed only here and are imported when an application is built, not
when this package is.

May import: ``errors``, ``paths``, ``decode``, ``photos``, ``runtime``, ``embed``,
``compare``, ``gallery`` and ``cluster`` (never evaluation, training or the CLI).
"""
