import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crnn import CRNN, Mechanism, data_loss, order_excess
from crnn._model import mass_action_rhs


def hand_rhs(y):
    # classic mechanism written out by hand
    a, b, c, d, e = y
    r = [0.1 * a * a, 0.2 * a, 0.13 * c, 0.3 * b * d]
    return np.array([-2 * r[0] - r[1], r[0] - r[3], r[1] - r[2], r[2] - r[3], r[3]])


@pytest.mark.parametrize("floor", [0.0, 1e-12])
def test_crnn_rhs_with_integer_weights_is_mass_action(classic, rng, floor):
    model = CRNN.from_mechanism(classic)
    assert model.tied
    for _ in range(5):
        y = rng.uniform(0.01, 1.5, size=5)
        got = mass_action_rhs(jnp.asarray(y), *model.weights(), floor)
        np.testing.assert_allclose(np.asarray(got), hand_rhs(y), rtol=1e-12)


def test_zero_concentration_exact_without_floor(classic):
    y = np.array([0.0, 0.7, 0.0, 0.0, 0.0])
    got = mass_action_rhs(jnp.asarray(y), *CRNN.from_mechanism(classic).weights(), 0.0)
    np.testing.assert_allclose(np.asarray(got), hand_rhs(y), atol=0)


def test_tied_orders_are_clipped_reactant_side():
    w_out = jnp.array([[-3.0, 0.5, -0.2], [1.0, -1.0, 0.0]])
    model = CRNN(w_out, jnp.zeros(2), None, species_order_clip=2.5)
    np.testing.assert_allclose(np.asarray(model.w_in), [[2.5, 0.0, 0.2], [0.0, 1.0, 0.0]])


def test_untied_orders_are_free(getkey):
    model = CRNN.init(getkey(), 3, 2, tied=False)
    assert not model.tied and model.w_in_free is not None
    m = Mechanism.parse("B -> C ; 2 ; order B=2")
    assert not CRNN.from_mechanism(m).tied
    with pytest.raises(ValueError, match="tied=False"):
        CRNN.from_mechanism(m, tied=True)


def test_init_shapes_and_ranges(getkey):
    model = CRNN.init(getkey(), 4, 3, ln_k_range=(-6.0, -4.0))
    assert model.w_out.shape == (3, 4) and model.ln_k.shape == (3,)
    assert np.all((np.asarray(model.ln_k) >= -6) & (np.asarray(model.ln_k) <= -4))


def test_data_loss_hand_computed():
    pred = np.zeros((2, 3, 2))
    data = np.zeros((2, 3, 2))
    data[..., 0] = 1.0  # species 0 off by 1 everywhere
    data[0, 0, 1] = 6.0  # species 1 off by 6 at one of 6 points -> mean 1
    scale = np.array([2.0, 4.0])
    # 1/2 + 1/4
    assert float(data_loss(pred, data, scale)) == pytest.approx(0.75)


def test_order_excess_hand_computed():
    w_in = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 0.0], [1.5, 0.5, 0.75]])
    # totals 3, 1.5, 2.75 -> relu(total - 2) = 1, 0, 0.75
    assert float(order_excess(w_in)) == pytest.approx(1.75)
    assert float(order_excess(w_in, max_total_order=3.0)) == pytest.approx(0.0)
    grad = jax.grad(order_excess)(w_in)
    np.testing.assert_array_equal(np.asarray(grad), [[1, 1, 1], [0, 0, 0], [1, 1, 1]])


def test_mechanism_of_params_prunes(classic):
    w_in, ln_k, w_out = classic.to_weights()
    noisy = w_out + 0.004 * np.sign(np.arange(w_out.size).reshape(w_out.shape) % 3 - 1)
    model = CRNN(jnp.asarray(noisy), jnp.asarray(ln_k))
    pruned = model.mechanism(classic.species, threshold=0.01)
    np.testing.assert_allclose(pruned.to_weights()[2][np.abs(w_out) == 0], 0.0)
