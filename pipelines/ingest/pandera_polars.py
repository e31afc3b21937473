"""pandera's polars API, imported without pulling in Spark.

When pyspark is installed (for the `spark` linkage engine), `import pandera` also imports
`pyspark.pandas` for pandera's own pyspark support, which this project never uses: ~0.3 s
and a few hundred modules in every process, against the promise that a run on the default
DuckDB engine pays nothing for Spark. The import is refused for the duration of pandera's
import only (pandera catches the ImportError), so a later real `import pyspark.pandas` works.
"""

from __future__ import annotations

import sys

_BLOCK = "pyspark.pandas" not in sys.modules
if _BLOCK:
    sys.modules["pyspark.pandas"] = None  # type: ignore[assignment]
try:
    import pandera.polars as pa
finally:
    if _BLOCK:
        del sys.modules["pyspark.pandas"]

__all__ = ["pa"]
