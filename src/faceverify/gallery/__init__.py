"""Galleries of enrolled people: one interface, an embedded and a PostgreSQL backend.

``Gallery`` (model-aware: enrol, identify, verify a claimed identity, remove) sits on a
store: ``sqlite`` (a folder: SQLite + vector index, the default) or ``postgres``
(PostgreSQL + pgvector, chosen by a ``postgresql://`` URL).
"""
