"""The ``faceverify`` command-line interface."""
