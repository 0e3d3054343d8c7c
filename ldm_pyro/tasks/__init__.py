"""Task runners beyond paired views; importing a module registers its runner.

Each module decorates a function ``run(spec, out_dir, *, resume, progress)`` with
:func:`ldm_pyro.runs.register_task`.
"""

from . import (
    ica,  # noqa: F401
    kalman,  # noqa: F401
    predictive,  # noqa: F401
)
