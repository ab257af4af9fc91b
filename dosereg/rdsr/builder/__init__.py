"""The project's own RDSR builder (tests, demo data, benchmarks): one package, three parts.

- ``core``: codes, the SR content encoder, specs, projection X-ray (TID 10001) and CT (TID 10011) reports, image
  headers (DX, MR), output and UIDs;
- ``demo``: random, realistic procedures (the demo data and the benchmark generator);
- ``mammo_nm``: mammography, radiopharmaceutical and patient radiation dose SRs, MG and NM images.

``from dosereg.rdsr import builder as B`` gives every public name (and the module-level helpers the tests use,
``B._num`` and the like). No Django imports (``dosereg.rdsr`` is a pure package).
"""
from __future__ import annotations

from . import core as _core
from . import demo as _demo
from . import mammo_nm as _mammo_nm
from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .demo import *  # noqa: F401,F403
from .demo import __all__ as _demo_all
from .mammo_nm import *  # noqa: F401,F403
from .mammo_nm import __all__ as _mammo_nm_all

__all__ = [*_core_all, *_demo_all, *_mammo_nm_all]

# the helpers and constants the tests reach as ``B._num``, ``B.C_COMMENT`` ...: every module-level name
for _m in (_core, _demo, _mammo_nm):
    globals().update({k: v for k, v in vars(_m).items() if not k.startswith("__") and k not in ("annotations",)})
del _m
