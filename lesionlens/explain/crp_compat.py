"""zennit-crp 0.6.0 uses `np.int`, which numpy 2 removed. Restore the alias (it was plain
`int`) before crp is imported, instead of forking the package."""

import numpy as np

if not hasattr(np, "int"):
    np.int = int  # type: ignore[attr-defined]
