import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import crnn  # noqa: E402

CLASSIC = "2A -> B ; 0.1\nA -> C ; 0.2\nC -> D ; 0.13\nB + D -> E ; 0.3"


@pytest.fixture
def getkey():
    """A fresh PRNG key on each call, deterministic within a test."""
    keys = iter(jax.random.split(jax.random.PRNGKey(5678), 1000))
    return lambda: next(keys)


@pytest.fixture(scope="session")
def classic():
    return crnn.Mechanism.parse(CLASSIC)


@pytest.fixture(scope="session")
def classic_dataset(classic):
    return crnn.make_dataset(classic, reactants=["A", "B"], seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
