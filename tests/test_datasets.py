"""The committed datasets in data/ are what data/datasets.yml generates."""

import numpy as np
import pytest
import yaml

from crnn import Dataset
from crnn.results import DATA
from crnn.study import make_datasets

NAMES = sorted(yaml.safe_load((DATA / "datasets.yml").read_text())["datasets"])


@pytest.mark.parametrize("name", NAMES)
def test_committed_dataset_regenerates(name, tmp_path):
    (path,) = make_datasets(tmp_path, names=[name])
    fresh, committed = Dataset.load(path), Dataset.load(DATA / f"{name}.csv")
    assert fresh.species == committed.species
    assert fresh.metadata == committed.metadata
    np.testing.assert_array_equal(fresh.split, committed.split)
    np.testing.assert_array_equal(fresh.ts, committed.ts)
    np.testing.assert_array_equal(fresh.y0, committed.y0)
    # The data are solved to rtol 1e-8, atol 1e-10 (SolverConfig's defaults, local errors): another CPU, or an
    # equivalent way of writing the rate law (crnn._model.mass_action_rates), moves the adaptive steps, and the
    # global error over 100 sampling times moves values of order 1 by up to about 1e-8 (seen: 1.1e-8).
    np.testing.assert_allclose(fresh.ys, committed.ys, rtol=1e-7, atol=1e-7)
