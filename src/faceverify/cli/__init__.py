"""The ``faceverify`` command-line interface: transport only, the logic lives below.

``common`` holds the exit codes, the shared options and helpers; ``models``, ``embed``,
``evaluate``, ``gallery`` and ``train`` each register one area's subcommands (``output``
writes what ``embed`` produces); ``main`` builds the parser and turns errors into exit
codes. Command modules import ``common``, never ``main``: no cycle.

May import: any faceverify module.
"""
