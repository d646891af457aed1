"""Galleries of enrolled people: one interface, an embedded and a PostgreSQL backend.

``Gallery`` (``gallery``: model-aware enrol, identify, verify a claimed identity,
export/import) sits on a store (``base`` holds the interface and the rules every store
follows): ``sqlite`` (a folder: SQLite + vector index, the default) or ``postgres``
(PostgreSQL + pgvector, chosen by a ``postgresql://`` URL). ``index`` is the embedded
gallery's search (exact, HNSW, centroids), which identification evaluation uses too.
``bulk`` enrols folders of people (resumable, one transaction per person).
``catalog`` keeps named galleries side by side (a folder of embedded galleries, or one
PostgreSQL schema each), as the HTTP service serves them.

May import: ``errors``, ``checks``, ``paths``, ``decode``, ``runtime`` (the interface, and
``build`` for the default model), ``embed`` and ``compare``.
"""
