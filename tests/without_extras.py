"""Run the ``faceverify`` command as on a base install: the extras' modules cannot be imported.

``python tests/without_extras.py ARGS...`` is ``faceverify ARGS...`` with every module of an
optional extra (PyTorch, timm, matplotlib, the PostgreSQL drivers...) made unimportable
before faceverify loads: an ``import torch`` anywhere on the way raises
ModuleNotFoundError, as on a machine where ``pip install faceverify`` installed nothing
more. At exit it checks that nothing tried to import one of them (an attempt caught by
``except ImportError`` is a hidden dependency on an extra too).
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

#: The top-level modules of the extras (pyproject.toml: torch, plots, postgres, index, onnx, video) and of the
#: test tools that only the full install has.
OPTIONAL = (
    "torch",
    "torchvision",
    "timm",
    "huggingface_hub",
    "safetensors",
    "onnxscript",
    "matplotlib",
    "sklearn",
    "psycopg",
    "psycopg_pool",
    "pgvector",
    "pgserver",
    "faiss",
    "onnx",
    "av",
    "trackers",
    "supervision",
    "cv2",
)

#: Optional modules something tried to import (and was refused): a base command tries none,
#: not even inside ``try: import ... except ImportError`` (extras are checked with find_spec).
ATTEMPTED: set[str] = set()


def _guarded(name: str, *args: Any, **kwargs: Any) -> Any:
    level = kwargs.get("level", args[3] if len(args) > 3 else 0)
    if level == 0 and name.split(".")[0] in OPTIONAL:
        ATTEMPTED.add(name.split(".")[0])
    return _import(name, *args, **kwargs)


_import = builtins.__import__

if __name__ == "__main__":
    for name in OPTIONAL:
        sys.modules[name] = None  # type: ignore[assignment]  # import now raises; find_spec says absent
    builtins.__import__ = _guarded
    from faceverify.cli.main import main

    code = main(sys.argv[1:])
    if ATTEMPTED:
        print(f"optional modules imported on the base path: {sorted(ATTEMPTED)}", file=sys.stderr)
        code = code or 99
    sys.exit(code)
