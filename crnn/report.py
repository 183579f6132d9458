"""Reporting learned mechanisms: pruning, weight matrices, equation tables, matching, plots."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ._mechanism import Mechanism, Reaction

__all__ = [
    "DATASET_LABELS",
    "EXTRAPOLATION_RANGES",
    "FIGURE_WIDTH",
    "ReactionMatch",
    "book_style",
    "comparison_table",
    "dataset_label",
    "effective_order",
    "extrapolation_errors",
    "extrapolation_sets",
    "find_reaction",
    "match_reactions",
    "mechanism_predictor",
    "mechanism_table",
    "panel_grid",
    "plot_fit",
    "plot_loss_history",
    "prediction_error",
    "preequilibrium_check",
    "reaction_similarity",
    "recovered",
    "shared_legend",
    "significant",
    "start_statistics",
    "styled",
    "true_loss",
    "weight_tables",
    "wilson_interval",
]


# ----------------------------------------------------------------------------------------- the book's look
DATASET_LABELS = {
    "classic": "classic mechanism",
    "classic_noise5": "classic mechanism, 5 % noise",
    "third_order_3A": "3A -> B",
    "third_order_3A_noise5": "3A -> B, 5 % noise",
    "third_order_2AB": "2A + B -> C",
    "third_order_2AB_noise5": "2A + B -> C, 5 % noise",
    "two_step_hidden_Z": "positive control",
    "two_step_hidden_Z_noise5": "positive control, 5 % noise",
}
"""What a reader calls each canonical dataset (data/datasets.yml): every figure and table of the book
labels data with `dataset_label`, never with the file name."""

FIGURE_WIDTH = 7.0
"""The widest figure of the book, in inches: at the default 100 dpi (700 px) a page 1280 px wide shows it
at about its natural size (672 px), so that the theme's smallest text (11 pt tick labels, 15 px) is shown
at about 14 px, the size of the page's own smallest text."""


def dataset_label(name: str) -> str:
    """A reader's name for a dataset: `DATASET_LABELS[name]`; for a known dataset with a noise suffix
    (``"classic_noise10"``) its label and the noise ("classic mechanism, 10 % noise"); otherwise `name` itself."""
    if name in DATASET_LABELS:
        return DATASET_LABELS[name]
    base, sep, level = str(name).rpartition("_noise")
    if sep and base in DATASET_LABELS and level.isdigit():
        return f"{DATASET_LABELS[base]}, {int(level)} % noise"
    return name


def significant(x, digits: int = 3) -> str:
    """A number as a reader wants it in a table: `digits` significant digits (``0.000123``, ``0.457``,
    ``12.3``), whole numbers of at least `digits` digits without an exponent (``12346``), very small or
    very large ones in scientific notation (``1.2e-07``); integers as they are, booleans "yes"/"no",
    missing values empty, anything else as ``str``."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if np.isnan(x):
            return ""
        if np.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0:
            return "0"
        if 10 ** (digits - 1) <= abs(x) < 1e7:
            return f"{x:.0f}"
        if 1e-4 <= abs(x) < 10 ** (digits - 1):
            return f"{x:.{digits}g}"
        return f"{x:.{max(digits - 1, 0)}e}".replace("e-0", "e-").replace("e+0", "e+")
    return str(x)


def styled(
    df: pd.DataFrame,
    digits: int = 3,
    formats: dict | None = None,
    index: bool | None = None,
    wrap: list | None = None,
    na_rep: str = "",
):
    """The book's table: every number to `digits` significant digits (`significant`), `formats` maps a
    column to its own format (a format string such as ``"{:.0%}"`` or a function); the index is shown
    when it means something (`index=None`: hidden when it is a plain 0, 1, 2, ... range); the text of
    the `wrap` columns (long mechanisms, equations) wraps onto several lines instead of widening the
    table; missing values show as `na_rep`. Returns a pandas Styler (the page shows it as an HTML table)."""
    formats = dict(formats or {})
    styler = df.style.format(lambda x: significant(x, digits), na_rep=na_rep)
    for column, fmt in formats.items():
        if column in df.columns:
            styler = styler.format(fmt, subset=[column], na_rep=na_rep)
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    if not index:
        styler = styler.hide(axis="index")
    wrap = [c for c in (wrap or []) if c in df.columns]
    if wrap:
        styler = styler.set_properties(subset=wrap, **{"white-space": "normal", "min-width": "12em"})
    return styler


def book_style() -> None:
    """The look of the book's pages: seaborn's "ticks" theme at sizes that stay legible at the page's
    width, and tables shown as `styled` shows them (numbers to three significant digits, a plain 0, 1,
    2, ... index hidden, a named index kept)."""
    import seaborn as sns

    sns.set_theme(style="ticks", context="notebook", rc={"figure.figsize": (6.4, 3.6), "legend.frameon": False})
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, lambda df: styled(df).to_html())


def panel_grid(n: int, ncols: int = 3, width: float = FIGURE_WIDTH, panel_height: float = 2.6, **subplots) -> tuple[object, list]:
    """A figure of `n` panels, at most `ncols` per row (a grid wraps into rows), `width` inches wide
    (at most `FIGURE_WIDTH`); constrained layout, so that `shared_legend` can place one legend for all
    panels outside them. Returns the figure and a flat list of its `n` axes (spare grid cells removed).
    `subplots` go to `plt.subplots` (`sharex`, `sharey`, ...)."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(min(width, FIGURE_WIDTH), panel_height * nrows), squeeze=False, layout="constrained", **subplots
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def shared_legend(fig, axes=None, loc: str = "outside lower center", ncols: int | None = None, **kwargs):
    """One legend for all panels of `fig` (each distinct label once), placed outside the panels (below
    them by default), the panels' own legends removed. Needs a constrained-layout figure (`panel_grid`)
    for the ``"outside ..."`` locations. Returns the legend, or None if no panel has a labelled artist."""
    axes = list(fig.axes if axes is None else np.atleast_1d(axes).ravel())
    handles: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                handles.setdefault(label, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        return None
    ncols = ncols or min(len(handles), 4)
    return fig.legend(list(handles.values()), list(handles), loc=loc, ncols=ncols, **kwargs)


def _equation(reaction: Reaction, digits: int = 3) -> str:
    return reaction.format(digits).split("  k=")[0]


def mechanism_table(mechanism: Mechanism, digits: int = 3) -> pd.DataFrame:
    """One row per reaction: equation, rate, orders and total order (`Mechanism.table`)."""
    return mechanism.table(digits)


def weight_tables(mechanism: Mechanism, digits: int = 3) -> dict[str, pd.DataFrame]:
    """The CRNN matrices as the seed prints them: `w_in`, `w_b` (= ln k) and `w_out`.

    Rows are reactions (R1, R2, ...), columns species.
    """
    w_in, ln_k, w_out = mechanism.to_weights()
    index = [f"R{j + 1}" for j in range(mechanism.n_reactions)]
    return {
        "w_in": pd.DataFrame(w_in, index=index, columns=mechanism.species).round(digits),
        "w_b": pd.DataFrame({"w_b = ln k": ln_k, "k": np.exp(ln_k)}, index=index).round(6),
        "w_out": pd.DataFrame(w_out, index=index, columns=mechanism.species).round(digits),
    }


@dataclasses.dataclass(frozen=True)
class ReactionMatch:
    """A true reaction paired with the learned reaction closest in stoichiometry."""

    true_index: int
    learned_index: int | None
    coefficient_error: float  # max |w_out difference| over species (inf if unmatched)
    rate_error: float  # |k_learned / k_true - 1| (inf if unmatched)


def match_reactions(truth: Mechanism, learned: Mechanism) -> list[ReactionMatch]:
    """Pair each true reaction with one learned reaction (optimal assignment).

    The cost of a pair is the largest absolute difference of their net
    stoichiometry (`w_out`) and orders (`w_in`) over all species of either
    mechanism; species missing from a mechanism count as zero.
    """
    from scipy.optimize import linear_sum_assignment

    species = list(dict.fromkeys([*truth.species, *learned.species]))
    t_in, t_lnk, t_out = truth.with_species(species).to_weights()
    l_in, l_lnk, l_out = learned.with_species(species).to_weights()
    if learned.n_reactions == 0:
        return [ReactionMatch(j, None, np.inf, np.inf) for j in range(truth.n_reactions)]
    cost = np.maximum(
        np.abs(t_out[:, None, :] - l_out[None, :, :]).max(axis=2),
        np.abs(t_in[:, None, :] - l_in[None, :, :]).max(axis=2),
    )
    rows, cols = linear_sum_assignment(cost)
    pairs = dict(zip(rows.tolist(), cols.tolist()))
    matches = []
    for j in range(truth.n_reactions):
        if j in pairs:
            i = pairs[j]
            matches.append(ReactionMatch(j, i, float(cost[j, i]), float(abs(np.exp(l_lnk[i] - t_lnk[j]) - 1.0))))
        else:
            matches.append(ReactionMatch(j, None, np.inf, np.inf))
    return matches


def recovered(truth: Mechanism, learned: Mechanism, coefficient_tol: float = 0.1, rate_tol: float = 0.05) -> bool:
    """Whether every true reaction is matched by a learned one within the tolerances."""
    return all(m.coefficient_error <= coefficient_tol and m.rate_error <= rate_tol for m in match_reactions(truth, learned))


def comparison_table(truth: Mechanism, learned: dict[str, Mechanism], digits: int = 3) -> pd.DataFrame:
    """The seed's table: ground-truth equation and rate beside each learned mechanism's.

    `learned` maps a column label (e.g. "original loss") to a pruned mechanism.
    Learned reactions that match no true reaction are listed in extra rows.
    """
    rows = [{"ground truth": _equation(r, digits), "rate": r.rate} for r in truth.reactions]
    extra: list[dict] = []
    for label, mech in learned.items():
        used = set()
        for m in match_reactions(truth, mech):
            if m.learned_index is not None:
                r = mech.reactions[m.learned_index]
                used.add(m.learned_index)
                rows[m.true_index][f"{label}: equation"] = _equation(r, digits)
                rows[m.true_index][f"{label}: rate"] = r.rate
        for i, r in enumerate(mech.reactions):
            if i not in used:
                extra.append(
                    {"ground truth": "(unmatched)", f"{label}: equation": _equation(r, digits), f"{label}: rate": r.rate}
                )
    return pd.DataFrame(rows + extra)


def plot_fit(dataset, predictions, experiments=(0,), species=None, ax=None, title=None):
    """Data (markers) and model trajectories (lines) for some experiments.

    **Arguments:**

    - `dataset`: the `Dataset`.
    - `predictions`: (n_experiments, n_times, n_observed) model concentrations.
    - `experiments`: which experiments to draw (one panel each, at most three per row, `panel_grid`).
    - `ax`: axes to draw into (one per experiment) instead of a new figure.

    One legend for all panels (species; line: model, markers: data), below them in a new figure.
    """
    import seaborn as sns

    species = list(species or dataset.species)
    cols = [dataset.species.index(s) for s in species]
    experiments = list(experiments)
    new = ax is None
    if new:
        fig, axes = panel_grid(len(experiments), sharey=True)
    else:
        axes = list(np.atleast_1d(ax).ravel())
        fig = axes[0].figure
    palette = sns.color_palette("colorblind", len(species))
    for a, e in zip(axes, experiments):
        for c, s, color in zip(cols, species, palette):
            a.plot(dataset.ts, dataset.ys[e, :, c], "o", ms=3, mfc="none", color=color, alpha=0.7)
            a.plot(dataset.ts, predictions[e, :, c], "-", color=color, label=s)
        a.set_xlabel("time (a.u.)")
        a.set_title(f"experiment {e}\n({dataset.split[e]})" if title is None else title)
    axes[0].set_ylabel("concentration (a.u.)")
    if new:
        shared_legend(fig, axes, title="species (line: model, markers: data)", ncols=len(species))
    else:
        axes[-1].legend(title="species (line: model,\nmarkers: data)", loc="best")
    return fig


def plot_loss_history(result, ax=None, label_prefix=""):
    """Training (every epoch) and validation loss of every start, log scale."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
    epochs = np.arange(1, result.train_history.shape[1] + 1)
    for s in range(result.n_starts):
        best = s == result.best_start
        ax.plot(
            epochs,
            result.train_history[s],
            color="C0",
            alpha=0.9 if best else 0.15,
            lw=1.2 if best else 0.6,
            label=f"{label_prefix}train (best start)" if best else None,
        )
        ax.plot(
            result.validation_epochs,
            result.validation_history[s],
            color="C1",
            alpha=0.9 if best else 0.15,
            lw=1.2 if best else 0.6,
            label=f"{label_prefix}validation (best start)" if best else None,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("scaled MAE loss (a.u.)")
    ax.legend()
    return ax.figure


def reaction_similarity(mechanism: Mechanism) -> np.ndarray:
    """Cosine similarity of the reactions' net stoichiometry (`w_out` rows), (n_reactions, n_reactions)."""
    _, _, w_out = mechanism.to_weights()
    norm = np.linalg.norm(w_out, axis=1, keepdims=True)
    unit = w_out / np.where(norm > 0, norm, 1.0)
    return unit @ unit.T


def effective_order(mechanism: Mechanism) -> float:
    """Rate-weighted mean total order `sum_j k_j n_j / sum_j k_j` of the reactions."""
    k = mechanism.rates
    n = np.array([r.total_order for r in mechanism.reactions])
    return float(np.sum(k * n) / np.sum(k)) if len(k) else float("nan")


def find_reaction(mechanism: Mechanism, template: str, tol: float = 0.15) -> int | None:
    """Index of a reaction of `mechanism` whose net stoichiometry and orders match `template`.

    `template` is an equation such as ``"2A -> Z"`` (no rate); a match differs by
    at most `tol` in every `w_out` and `w_in` entry. Returns `None` if none does.
    """
    t = Mechanism.parse(f"{template} ; 1")
    species = list(dict.fromkeys([*mechanism.species, *t.species]))
    t_in, _, t_out = t.with_species(species).to_weights()
    m_in, _, m_out = mechanism.with_species(species).to_weights()
    err = np.maximum(np.abs(m_out - t_out[0]).max(axis=1), np.abs(m_in - t_in[0]).max(axis=1))
    if len(err) == 0 or err.min() > tol:
        return None
    return int(np.argmin(err))


def start_statistics(result, threshold: float = 0.01, templates: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per random start of a `FitResult`: losses, orders, similarity, structure.

    Columns: `start`, `validation loss`, `train loss`, `failed steps`,
    `effective order` (rate-weighted mean total order), `max total order`,
    `min total order`, `summed rate`, `mean cosine similarity` (of the `w_out` rows, off-diagonal
    mean; 1 for copies), and for each `templates` entry (label -> equation such
    as ``"2A -> Z"``) whether a pruned reaction matches it, plus `all templates`.
    """
    rows = []
    for s in range(result.n_starts):
        m = result.mechanism(threshold, start=s)
        n = m.n_reactions
        sim = reaction_similarity(m)
        off = sim[~np.eye(n, dtype=bool)] if n > 1 else np.array([np.nan])
        row = {
            "start": s,
            "validation loss": float(result.final_validation_loss[s]),
            "train loss": float(result.final_train_loss[s]),
            "failed steps": int(result.failures[s]),
            "effective order": effective_order(m),
            "max total order": max((r.total_order for r in m.reactions), default=np.nan),
            "min total order": min((r.total_order for r in m.reactions), default=np.nan),
            "summed rate": float(m.rates.sum()),
            "mean cosine similarity": float(np.mean(off)),
        }
        if templates:
            found = {label: find_reaction(m, eq) is not None for label, eq in templates.items()}
            row.update(found)
            row["all templates"] = all(found.values())
        rows.append(row)
    return pd.DataFrame(rows)


def preequilibrium_check(
    result,
    dataset,
    truth: Mechanism,
    forward: str,
    reverse: str,
    product_step: str,
    true_validation_loss: float,
    partner: str = "A",
    threshold: float = 0.01,
    flux_rel: float = 1e-3,
    loss_factor: float = 1.1,
    rate_tol: float = 0.05,
    structure_tol: float = 0.15,
) -> pd.DataFrame:
    """Per random start: does the learned mechanism split the third-order law as the pre-equilibrium does?

    For each start, reactions whose largest rate along the model's trajectories
    is below `flux_rel` times the largest are dropped (`FitResult.fluxes`), the
    rest pruned at `threshold`. Columns: `validation loss`, `loss ratio` (to
    `true_validation_loss`), `max total order`, one column per step (found
    within `structure_tol`), `structure`, `effective rate` (k_forward k_product /
    k_reverse, the limit), `QSS effective rate` (the third-order coefficient that
    best fits the learned rate law k_f k_p x / (k_r + k_p x) along the training
    data, x the `partner` of the product step), their errors, and `success`: loss
    ratio <= `loss_factor`, every reaction at most bimolecular (total order <=
    2.05), the structure found and either effective rate within `rate_tol`.
    """
    (true_reaction,) = truth.reactions
    k_true, order = true_reaction.rate, true_reaction.reaction_orders
    rows = []
    steps = {"forward": forward, "reverse": reverse, "product step": product_step}
    for s in range(result.n_starts):
        keep = result.active(dataset, s, flux_rel)
        m = result.mechanism(threshold, start=s, keep=keep)
        found = {label: find_reaction(m, eq, structure_tol) for label, eq in steps.items()}
        structure = all(i is not None for i in found.values())
        rates = m.rates
        k_eff = rates[found["forward"]] * rates[found["product step"]] / rates[found["reverse"]] if structure else np.nan
        k_qss = np.nan
        if structure:
            # QSS equivalent: the least-squares coefficient k of rate ~ k * monomial (the truth's rate law)
            # fitted to the learned rate law * monomial along the training data.
            states = dataset.ys[dataset.train].reshape(-1, len(dataset.species))
            x = states[:, dataset.species.index(partner)]
            monomial = np.prod([states[:, dataset.species.index(sp)] ** o for sp, o in order.items()], axis=0)
            kf, kr, kp = rates[found["forward"]], rates[found["reverse"]], rates[found["product step"]]
            law = kf * kp / (kr + kp * x)  # the learned rate is law * monomial
            k_qss = float(np.sum(law * monomial**2) / np.sum(monomial**2))
        max_order = max((r.total_order for r in m.reactions), default=np.nan)
        hidden = result.species[-1]
        catalysed = any(r.reaction_orders.get(hidden, 0) > 0 and hidden not in r.reactants for r in m.reactions)
        val = float(result.final_validation_loss[s])
        ratio = val / true_validation_loss if true_validation_loss > 0 else np.inf
        rate_error = abs(k_eff / k_true - 1) if structure else np.nan
        qss_error = abs(k_qss / k_true - 1) if structure else np.nan
        rows.append(
            {
                "start": s,
                "validation loss": val,
                "loss ratio": ratio,
                "max total order": max_order,
                **{label: i is not None for label, i in found.items()},
                "structure": structure,
                "effective rate": k_eff,
                "rate error": rate_error,
                "QSS effective rate": k_qss,
                "QSS rate error": qss_error,
                "success": bool(
                    ratio <= loss_factor and max_order <= 2.05 and structure and min(rate_error, qss_error) <= rate_tol
                ),
                "reactions kept": int(keep.sum()),
                "catalysed by the hidden species": catalysed,
            }
        )
    return pd.DataFrame(rows)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion `successes / trials` (scipy's
    `binomtest(...).proportion_ci(method="wilson")`); `(nan, nan)` for no trials.

    Reference: E. B. Wilson, "Probable inference, the law of succession, and statistical
    inference", J. Am. Stat. Assoc. 22, 209 (1927).
    """
    from scipy.stats import binomtest

    if trials == 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


# ----------------------------------------------------------------------------------------- extrapolation
EXTRAPOLATION_RANGES = {"training range": None, "high: 1.5-3": (1.5, 3.0), "low: 0.02-0.2": (0.02, 0.2)}


def extrapolation_sets(dataset, ranges=None, n_experiments: int = 10, seed: int = 1000) -> dict:
    """Noise-free test experiments of `dataset`'s truth, by its own protocol, from other initial states.

    For each `label: (low, high)` of `ranges` (default `EXTRAPOLATION_RANGES`: the training range
    itself, 1.5-3 and 0.02-0.2), `n_experiments` new experiments whose reactants (every species the
    data start non-zero) start uniform in that range; `None` means the dataset's own range. Same
    times, same observed species, no noise: a model's error on them is its distance from the truth.
    Fresh initial states (`seed`), so none repeats a training experiment.
    """
    from ._data import make_dataset

    if "mechanism" not in dataset.metadata or "parameters" not in dataset.metadata:
        raise ValueError("the dataset does not record the mechanism and protocol that made it (crnn.make_dataset metadata)")
    truth = Mechanism.parse(dataset.metadata["mechanism"])
    p = dataset.metadata["parameters"]
    sets = {}
    for i, (label, bounds) in enumerate((ranges or EXTRAPOLATION_RANGES).items()):
        sets[label] = make_dataset(
            truth, n_experiments=n_experiments, n_train=n_experiments, t_end=p["t_end"], n_points=p["n_points"], noise=0.0,
            seed=seed + i, reactants=p["reactants"], y0_range=tuple(p["y0_range"] if bounds is None else bounds),
            observed=p["observed"],
        )  # fmt: skip
    return sets


def mechanism_predictor(mechanism: Mechanism, observed, config=None):
    """`predict(y0, ts)` of a mechanism over the `observed` species (its other species, e.g. a hidden one, start at 0;
    observed species it lacks stay constant). `config`: a `crnn.SolverConfig` (default Kvaerno5, exact mass action)."""
    from ._simulate import simulate

    observed = list(observed)
    extra = [s for s in mechanism.species if s not in observed]
    full = mechanism.with_species([*observed, *extra])

    def predict(y0, ts):
        y0 = np.atleast_2d(np.asarray(y0, dtype=float))
        y0_full = np.concatenate([y0, np.zeros((len(y0), len(extra)))], axis=1)
        return np.asarray(simulate(full, y0_full, ts, config=config))[..., : len(observed)]

    return predict


def true_loss(dataset, split: str = "validation", truth: Mechanism | None = None) -> float:
    """The study's loss of the true mechanism on `dataset`'s `split` experiments ("train", "validation"
    or "all"): the noise floor every learned model is compared with.

    The truth is the mechanism recorded in the dataset's metadata (`crnn.make_dataset`), or `truth`;
    its species the data do not observe (a hidden intermediate) start at zero. Solved adaptively with
    exact mass action (`mechanism_predictor`). On noise-free data made by that truth (metadata noise 0)
    it is 0 by construction, and returned as 0 rather than as the solver's error (about 1e-9).
    """
    if split not in ("train", "validation", "all"):
        raise ValueError(f"split must be 'train', 'validation' or 'all', got {split!r}")
    if truth is None:
        if "mechanism" not in dataset.metadata:
            raise ValueError("the dataset records no mechanism (crnn.make_dataset metadata); pass truth=")
        if dataset.metadata.get("parameters", {}).get("noise") == 0:
            return 0.0
        truth = Mechanism.parse(dataset.metadata["mechanism"])
    rows = np.ones(dataset.n_experiments, bool) if split == "all" else (dataset.train if split == "train" else dataset.validation)
    from ._loss import data_loss

    pred = mechanism_predictor(truth, dataset.species)(dataset.y0[rows], dataset.ts)
    return float(data_loss(pred, dataset.ys[rows], dataset.scale()))


def prediction_error(predict, test) -> float:
    """The data loss (scaled mean absolute error, the study's loss) of `predict(y0, ts)` on `test`.

    `test.scale()` scales each species, so errors on different ranges are relative ones. inf when the
    prediction fails (an exception or a non-finite value).
    """
    from ._loss import data_loss

    try:
        pred = np.asarray(predict(test.y0, test.ts), dtype=float)
    except Exception:  # a blown-up or failed solve is an infinite error, reported as such
        return float("inf")
    if pred.shape != test.ys.shape or not np.all(np.isfinite(pred)):
        return float("inf")
    return float(data_loss(pred, test.ys, test.scale()))


def extrapolation_errors(models: dict, sets: dict, **columns) -> pd.DataFrame:
    """One row per model and test set: `model`, `test set`, `error` (`prediction_error`), plus `columns`."""
    rows = []
    for name, predict in models.items():
        for label, test in sets.items():
            rows.append({**columns, "model": name, "test set": label, "error": prediction_error(predict, test)})
    return pd.DataFrame(rows)
