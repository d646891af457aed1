"""Run the ``faceverify`` command as on a base install: the extras' modules cannot be imported.

``python tests/without_extras.py ARGS...`` is ``faceverify ARGS...`` with every module of an
optional extra (PyTorch, timm, matplotlib, the PostgreSQL drivers...) made unimportable
before faceverify loads: an ``import torch`` anywhere on the way raises
ModuleNotFoundError, as on a machine where ``pip install faceverify`` installed nothing
more. At exit it checks that none of them was imported anyway.
"""

from __future__ import annotations

import sys

#: The top-level modules of the extras (pyproject.toml: torch, plots, postgres, index, onnx) and of the
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
)

if __name__ == "__main__":
    for name in OPTIONAL:
        sys.modules[name] = None  # type: ignore[assignment]  # import now raises
    from faceverify.cli.main import main

    code = main(sys.argv[1:])
    leaked = sorted(n for n in sys.modules if n.split(".")[0] in OPTIONAL and sys.modules[n] is not None)
    if leaked:
        print(f"optional modules imported on the base path: {leaked}", file=sys.stderr)
        code = code or 99
    sys.exit(code)
