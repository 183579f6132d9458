"""crnn: Chemical Reaction Neural Networks in JAX."""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .data import Dataset as Dataset
from .data import make_dataset as make_dataset
from .loss import data_loss as data_loss
from .loss import order_excess as order_excess
from .mechanism import Mechanism as Mechanism
from .mechanism import Reaction as Reaction
from .model import CRNN as CRNN
from .simulate import SimulationError as SimulationError
from .simulate import SolverConfig as SolverConfig
from .simulate import simulate as simulate
from .train import FitResult as FitResult
from .train import fit as fit
