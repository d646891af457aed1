"""The HTTP service: the library's verification and galleries over the network, and a page.

``app`` holds the application factory; ``settings`` what an operator chooses (limits,
batching, where galleries and keys live); ``keys`` API keys (stored hashed; no FastAPI
needed, so the CLI can manage them); ``errors`` the one mapping from faceverify's
exceptions to HTTP statuses; ``middleware`` body limits, deadlines, authentication and
headers; ``batcher`` the dynamic batcher that lets concurrent requests share a forward
pass; ``photos`` decoding of uploads and the place where face detection plugs in;
``state`` what the lifespan opens once (model, batcher, galleries); ``routers`` one
module per resource; ``static`` the web page.

This package adds transport only: embedding, verification and gallery work is done by
the library's own functions. It may import everything below it in the flow (decoding,
models, embed, verification, gallery) and never the CLI or training. FastAPI and
uvicorn are needed only here (``pip install 'faceverify[serve]'``) and are imported
when an application is built, not when this package is.
"""
