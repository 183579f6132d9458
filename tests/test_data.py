import json

import numpy as np
import pytest

from crnn import Dataset, Mechanism, make_dataset


def test_reference_protocol(classic):
    ds = make_dataset(classic, reactants=["A", "B"], seed=3)
    assert ds.ys.shape == (30, 100, 5) and ds.ts.shape == (100,)
    assert ds.ts[0] == 0 and ds.ts[-1] == 40
    assert ds.train.sum() == 20 and ds.validation.sum() == 10
    assert np.all((ds.y0[:, :2] >= 0.2) & (ds.y0[:, :2] <= 1.2))
    assert np.all(ds.y0[:, 2:] == 0)
    np.testing.assert_allclose(ds.ys[:, 0, :], ds.y0, atol=1e-12)  # noise-free data start at y0
    assert ds.metadata["parameters"]["seed"] == 3


def test_default_reactants_are_species_never_produced():
    m = Mechanism.parse("2A + B -> C ; 0.1")
    ds = make_dataset(m, n_experiments=4, n_train=2, n_points=5)
    assert ds.metadata["parameters"]["reactants"] == ["A", "B"]
    assert np.all(ds.y0[:, 2] == 0) and np.all(ds.y0[:, :2] > 0)


def test_multiplicative_noise_statistics():
    m = Mechanism.parse("A -> B ; 1e-9")  # nearly constant A
    clean = make_dataset(m, n_experiments=40, n_train=20, noise=0.0, seed=1)
    noisy = make_dataset(m, n_experiments=40, n_train=20, noise=0.05, seed=1)
    ratio = noisy.ys[..., 0] / clean.ys[..., 0] - 1.0
    assert abs(ratio.mean()) < 0.003
    assert ratio.std() == pytest.approx(0.05, rel=0.05)
    assert np.all(noisy.ys[:, 0, 1] == 0.0)  # zero stays zero under multiplicative noise


def test_same_seed_same_data_other_seed_other_data(classic):
    a = make_dataset(classic, n_experiments=6, n_train=3, noise=0.05, seed=7)
    b = make_dataset(classic, n_experiments=6, n_train=3, noise=0.05, seed=7)
    c = make_dataset(classic, n_experiments=6, n_train=3, noise=0.05, seed=8)
    np.testing.assert_array_equal(a.ys, b.ys)
    assert not np.array_equal(a.ys, c.ys)


def test_a_dataset_with_no_nonzero_initial_state_is_refused():
    # A <=> Z, Z -> B: every species is produced by some reaction, so the default reactants are none and every
    # experiment would be all zeros at all times (the referee's finding on the second positive control).
    chain = Mechanism.parse("A -> Z ; 0.5\nZ -> A ; 0.2\nZ -> B ; 0.3")
    with pytest.raises(ValueError, match="reactants default to the species no reaction produces"):
        make_dataset(chain, observed=["A", "B"])
    with pytest.raises(ValueError, match=r"reactants given as \[\]"):
        make_dataset(chain, reactants=[])
    with pytest.raises(ValueError, match="y0_range"):
        make_dataset(chain, reactants=["A"], y0_range=(0.0, 0.0))
    data = make_dataset(chain, reactants=["A"], observed=["A", "B"], n_experiments=4, n_train=2)
    assert np.all(data.y0[:, 0] > 0) and np.all(data.ys[:, -1, 1] > 0)  # real data: B is made


def test_hidden_species_can_be_left_out():
    m = Mechanism.parse("2A <=> Z ; 1, 1\nZ + A -> B ; 1")
    ds = make_dataset(m, n_experiments=3, n_train=2, n_points=10, observed=["A", "B"], reactants=["A"])
    assert ds.species == ("A", "B") and ds.ys.shape == (3, 10, 2) and np.all(ds.ys[:, -1, 1] > 0)


def test_bad_arguments(classic):
    with pytest.raises(ValueError, match="n_train"):
        make_dataset(classic, n_experiments=5, n_train=6)
    with pytest.raises(ValueError, match="unknown species"):
        make_dataset(classic, reactants=["Q"])
    with pytest.raises(ValueError, match="noise"):
        make_dataset(classic, noise=-0.1)


@pytest.fixture
def small(classic):
    return make_dataset(classic, n_experiments=3, n_train=2, n_points=6, noise=0.05, reactants=["A", "B"], seed=2)


def test_save_load_round_trip(small, tmp_path):
    path = small.save(tmp_path / "classic")
    assert path.name == "classic.csv" and (tmp_path / "classic.json").exists()
    manifest = json.loads((tmp_path / "classic.json").read_text())
    assert manifest["metadata"]["parameters"]["seed"] == 2 and len(manifest["sha256"]) == 64
    back = Dataset.load(tmp_path / "classic.csv")
    assert back.species == small.species
    np.testing.assert_array_equal(back.ys, small.ys)
    np.testing.assert_array_equal(back.ts, small.ts)
    np.testing.assert_array_equal(back.y0, small.y0)
    np.testing.assert_array_equal(back.split, small.split)
    assert back.metadata == small.metadata


def _corrupt(small, tmp_path, edit):
    path = small.save(tmp_path / "d")
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda L: L.__setitem__(0, L[0].replace(",time", ",clock")), r"missing column\(s\) \['time'\].*row 1"),
        (lambda L: L.__setitem__(0, L[0].replace(",E", ",F")), r"missing species column\(s\) \['E'\]"),
        (lambda L: L.__setitem__(3, L[3].rsplit(",", 1)[0] + ",nan"), r"row 4: E is nan"),
        (lambda L: L.__setitem__(3, L[3].rsplit(",", 1)[0] + ",-0.5"), r"row 4: negative concentration E=-0.5"),
        (lambda L: L.__setitem__(3, ",".join(L[3].split(",")[:2] + ["0.0"] + L[3].split(",")[3:])), r"row 4: unsorted time"),
        (
            lambda L: L.__setitem__(3, ",".join(L[3].split(",")[:2] + [L[2].split(",")[2]] + L[3].split(",")[3:])),
            r"row 4: repeated time",
        ),
        (lambda L: L.__setitem__(5, L[5] + ",1.0"), r"row 6: expected 8 fields"),
    ],
)
def test_load_rejects_bad_files_naming_file_and_row(small, tmp_path, edit, message):
    path = _corrupt(small, tmp_path, edit)
    with pytest.raises(ValueError, match=message) as info:
        Dataset.load(path, verify_checksum=False)
    assert str(path) in str(info.value)


def test_load_detects_edited_file(small, tmp_path):
    path = _corrupt(small, tmp_path, lambda L: L.__setitem__(2, L[2][:-1] + ("1" if L[2][-1] != "1" else "2")))
    with pytest.raises(ValueError, match="checksum"):
        Dataset.load(path)
