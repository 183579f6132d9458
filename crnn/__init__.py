"""crnn: Chemical Reaction Neural Networks in JAX.

The public API is what this module exports, plus the namespaces

- `crnn.integrate` (training integrators), `crnn.hidden` (hidden-species handling),
- `crnn.report` (tables, matching, plots), `crnn.stiffness` (Jacobian spectra, pre-equilibrium
  limits), `crnn.landscape` (the exhaustive mechanism map),
- `crnn.results` (what the study's notebooks read and write); `crnn.study` is the command-line
  runner (`python -m crnn.study`).

Modules whose names start with an underscore are internal (as in diffrax and equinox): their
contents may change without notice; everything public is re-exported here or in a namespace above.
"""

import os as _os
from pathlib import Path as _Path

# Runtime checks inside diffrax, optimistix and lineax (equinox's `error_if`) give NaN instead of raising through a
# host callback: an executable with a host callback cannot be stored in the persistent compilation cache, so
# every adaptive (Kvaerno5) solve was compiled again in every process. The package's solves already report
# failures themselves (`throw=False`, an `ok` flag; a NaN is a failed solve). Set before equinox is imported;
# `EQX_ON_ERROR=raise` in the environment keeps equinox's default.
_os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax as _jax

_jax.config.update("jax_enable_x64", True)


def _use_compilation_cache() -> None:
    """A persistent JAX compilation cache in the project's `.cache/jax` (ignored by git), shared by the
    runner, the notebooks' kernels and the tests: a kernel that starts cold reuses what an earlier one
    compiled. `CRNN_JAX_CACHE` names another folder, or `0` turns it off."""
    root = _Path(__file__).resolve().parents[1]
    folder = _os.environ.get("CRNN_JAX_CACHE") or (str(root / ".cache" / "jax") if (root / "pyproject.toml").exists() else "")
    if folder and folder != "0":
        _jax.config.update("jax_compilation_cache_dir", folder)
        _jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        _jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_use_compilation_cache()

from ._data import Dataset as Dataset
from ._data import make_dataset as make_dataset
from ._loss import data_loss as data_loss
from ._loss import order_excess as order_excess
from ._mechanism import Mechanism as Mechanism
from ._mechanism import Reaction as Reaction
from ._model import CRNN as CRNN
from ._simulate import SimulationError as SimulationError
from ._simulate import SolverConfig as SolverConfig
from ._simulate import simulate as simulate
from ._train import Adam as Adam
from ._train import FitResult as FitResult
from ._train import RandomStarts as RandomStarts
from ._train import fit as fit
from .discover import Discovery as Discovery
from .discover import discover as discover
from .results import Results as Results
from .results import load_dataset as load_dataset
from .results import load_results as load_results
from .results import load_seed_reference as load_seed_reference

__all__ = [
    "CRNN",
    "Adam",
    "Dataset",
    "Discovery",
    "FitResult",
    "Mechanism",
    "RandomStarts",
    "Reaction",
    "Results",
    "SimulationError",
    "SolverConfig",
    "data_loss",
    "discover",
    "fit",
    "load_dataset",
    "load_results",
    "load_seed_reference",
    "make_dataset",
    "order_excess",
    "simulate",
]
