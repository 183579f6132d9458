"""Reaction mechanisms: parse text such as ``2A + B -> C ; 0.5``, hold rates, print.

A mechanism is a list of mass-action reactions over an ordered list of species.
Each reaction has reactant and product stoichiometric coefficients, a rate
constant and, optionally, reaction orders that differ from the reactant
coefficients (as a CRNN with untied ``w_in`` may learn).

Text format, one reaction per line (blank lines and ``#`` comments ignored)::

    2A + B -> C ; 0.5          # rate after a semicolon
    2.093A -> 1.107B  k=0.101  # or as printed by str(mechanism)
    2A <=> Z ; 1.0, 0.5        # reversible: forward and backward rates
    B -> C ; 3e7 ; order B=2   # orders that differ from the reactant side

A term is an optional positive coefficient followed by a species name that
starts with a letter: ``2NO2`` is two ``NO2``, ``N2O2`` is one ``N2O2``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Mechanism", "Reaction"]

_TERM = re.compile(r"^(?P<coef>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)?\s*\*?\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_ARROW = re.compile(r"<=>|->|=>|→")
_K_SUFFIX = re.compile(r"\s+k\s*=\s*(?P<rate>\S+)\s*(?:\[order\s+(?P<order>[^\]]*)\])?\s*$")
_COEF_TOL = 1e-9


def _format_number(x: float, digits: int) -> str:
    """A coefficient as the seed prints it: integers bare, others with ``digits`` decimals."""
    if abs(x - round(x)) < _COEF_TOL:
        return str(int(round(x)))
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return text


def _format_side(side: Mapping[str, float], digits: int) -> str:
    terms = []
    for name, coef in side.items():
        c = _format_number(coef, digits)
        terms.append(name if c == "1" else f"{c}{name}")
    return " + ".join(terms) if terms else "0"


def _format_rate(k: float, digits: int) -> str:
    return f"{k:.{digits}g}"


@dataclasses.dataclass(frozen=True)
class Reaction:
    """One mass-action reaction ``sum reactants -> sum products`` with rate ``rate``.

    **Arguments:**

    - `reactants`, `products`: species name -> stoichiometric coefficient (> 0).
    - `rate`: the rate constant k > 0.
    - `orders`: species name -> reaction order, or `None` when the orders are the
      reactant coefficients (elementary mass action).
    """

    reactants: Mapping[str, float]
    products: Mapping[str, float]
    rate: float
    orders: Mapping[str, float] | None = None

    @property
    def reaction_orders(self) -> dict[str, float]:
        """The orders actually used in the rate law."""
        return dict(self.reactants if self.orders is None else self.orders)

    @property
    def total_order(self) -> float:
        return float(sum(self.reaction_orders.values()))

    def format(self, digits: int = 3, rate_digits: int = 3) -> str:
        """The reaction as ``2.093A -> 1.107B  k=0.101`` (the seed's style)."""
        text = f"{_format_side(self.reactants, digits)} -> {_format_side(self.products, digits)}"
        text += f"  k={_format_rate(self.rate, rate_digits)}"
        if self.orders is not None:
            orders = " ".join(f"{n}={_format_number(o, digits)}" for n, o in self.orders.items())
            text += f" [order {orders}]"
        return text

    def __str__(self) -> str:
        return self.format()


def _parse_side(text: str, line: str) -> dict[str, float]:
    side: dict[str, float] = {}
    text = text.strip()
    if not text:
        raise ValueError(f"empty side of a reaction in line {line!r}")
    if text in ("0", "∅"):
        return side
    for raw in text.split("+"):
        term = raw.strip()
        match = _TERM.match(term)
        if match is None:
            raise ValueError(f"cannot read term {term!r} in line {line!r}")
        coef_text = match.group("coef")
        coef = 1.0 if coef_text is None else float(coef_text)
        if not math.isfinite(coef) or coef <= 0:
            raise ValueError(
                f"coefficient of {match.group('name')!r} must be a positive number, got {coef_text!r} in line {line!r}"
            )
        name = match.group("name")
        side[name] = side.get(name, 0.0) + coef
    return side


def _parse_rate(text: str, line: str) -> float:
    try:
        k = float(text)
    except ValueError:
        raise ValueError(f"rate {text.strip()!r} is not a number in line {line!r}") from None
    if not math.isfinite(k) or k <= 0:
        raise ValueError(f"rate must be a positive number, got {text.strip()!r} in line {line!r}")
    return k


def _parse_orders(text: str, line: str) -> dict[str, float]:
    body = text.strip()
    if body.startswith("order"):
        body = body[len("order") :]
    orders: dict[str, float] = {}
    for item in body.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not _TERM.match(name):
            raise ValueError(f"cannot read order {item!r} (expected NAME=VALUE) in line {line!r}")
        try:
            order = float(value)
        except ValueError:
            raise ValueError(f"order {value!r} is not a number in line {line!r}") from None
        if not math.isfinite(order) or order < 0:
            raise ValueError(f"order must be a non-negative number, got {value!r} in line {line!r}")
        orders[name] = order
    return orders


def _parse_line(line: str) -> list[Reaction]:
    body = line.split("#", 1)[0].strip()
    order_text = None
    suffix = _K_SUFFIX.search(body)
    if suffix is not None:
        rate_texts = [suffix.group("rate")]
        order_text = suffix.group("order")
        equation = body[: suffix.start()]
    else:
        parts = body.split(";")
        equation = parts[0]
        if len(parts) < 2 or not parts[1].strip():
            raise ValueError(f"missing rate (write 'A -> B ; 0.1') in line {line!r}")
        if len(parts) > 3:
            raise ValueError(f"too many ';' in line {line!r}")
        rate_texts = [r for r in parts[1].split(",")]
        if len(parts) == 3:
            order_text = parts[2]
    arrows = _ARROW.findall(equation)
    if len(arrows) != 1:
        raise ValueError(f"expected exactly one arrow ('->' or '<=>') in line {line!r}")
    lhs, rhs = _ARROW.split(equation)
    reactants = _parse_side(lhs, line)
    products = _parse_side(rhs, line)
    orders = None if order_text is None else _parse_orders(order_text, line)
    if arrows[0] == "<=>":
        if len(rate_texts) != 2:
            raise ValueError(f"a reversible reaction needs two rates 'kf, kb' in line {line!r}")
        if orders is not None:
            raise ValueError(f"orders are not supported on reversible reactions in line {line!r}")
        kf, kb = (_parse_rate(r, line) for r in rate_texts)
        return [Reaction(reactants, products, kf), Reaction(products, reactants, kb)]
    if len(rate_texts) != 1:
        raise ValueError(f"an irreversible reaction takes one rate in line {line!r}")
    if not reactants and not orders:
        raise ValueError(f"a reaction needs at least one reactant in line {line!r}")
    return [Reaction(reactants, products, _parse_rate(rate_texts[0], line), orders)]


@dataclasses.dataclass(frozen=True)
class Mechanism:
    """A reaction mechanism: ordered species and a tuple of reactions.

    Build one with [`Mechanism.parse`][] or [`Mechanism.from_weights`][]; turn it
    into CRNN weights with [`Mechanism.to_weights`][].
    """

    species: tuple[str, ...]
    reactions: tuple[Reaction, ...]

    def __post_init__(self):
        if len(set(self.species)) != len(self.species):
            raise ValueError(f"species names repeat: {self.species}")
        known = set(self.species)
        for r in self.reactions:
            missing = (set(r.reactants) | set(r.products) | set(r.reaction_orders)) - known
            if missing:
                raise ValueError(f"reaction {r} uses species not in {self.species}: {sorted(missing)}")

    # ------------------------------------------------------------------ build
    @classmethod
    def parse(cls, text: str | Iterable[str], species: Sequence[str] | None = None) -> Mechanism:
        """Read a mechanism from text (one reaction a line) or a list of lines.

        **Arguments:**

        - `text`: the reactions; see the module docstring for the format.
        - `species`: optional species order; species not listed are appended in
          order of first appearance. Listing a species that no reaction uses
          adds an inert species (e.g. a hidden intermediate not yet connected).

        **Returns:** a `Mechanism`. Malformed lines raise `ValueError` quoting the line.
        """
        lines = text.splitlines() if isinstance(text, str) else list(text)
        reactions: list[Reaction] = []
        for line in lines:
            if not line.split("#", 1)[0].strip():
                continue
            reactions.extend(_parse_line(line))
        if not reactions:
            raise ValueError("no reactions found in the mechanism text")
        order = list(species or [])
        for r in reactions:
            for name in [*r.reactants, *r.products, *r.reaction_orders]:
                if name not in order:
                    order.append(name)
        return cls(tuple(order), tuple(reactions))

    @classmethod
    def from_weights(cls, species: Sequence[str], w_in, ln_k, w_out, *, tol: float = 0.0) -> Mechanism:
        """The mechanism of CRNN weights (rows reactions, columns species).

        Reactants are the negative entries of `w_out`, products the positive
        ones; where `w_in` differs from the reactant side the orders are kept
        explicitly. Entries with absolute value <= `tol` count as zero, and a
        reaction with neither reactants, products nor orders is dropped.
        """
        w_in = np.asarray(w_in, dtype=float)
        w_out = np.asarray(w_out, dtype=float)
        ln_k = np.asarray(ln_k, dtype=float).reshape(-1)
        n_r, n_s = w_out.shape
        if w_in.shape != (n_r, n_s) or ln_k.shape != (n_r,) or len(species) != n_s:
            raise ValueError(f"shape mismatch: w_in {w_in.shape}, ln_k {ln_k.shape}, w_out {w_out.shape}, {len(species)} species")
        reactions = []
        for j in range(n_r):
            reactants = {s: float(-w_out[j, i]) for i, s in enumerate(species) if w_out[j, i] < -tol}
            products = {s: float(w_out[j, i]) for i, s in enumerate(species) if w_out[j, i] > tol}
            orders = {s: float(w_in[j, i]) for i, s in enumerate(species) if w_in[j, i] > tol}
            if not reactants and not products and not orders:
                continue
            same = set(orders) == set(reactants) and all(abs(orders[s] - reactants[s]) < _COEF_TOL for s in orders)
            reactions.append(Reaction(reactants, products, float(np.exp(ln_k[j])), None if same else orders))
        return cls(tuple(species), tuple(reactions))

    # ------------------------------------------------------------------ use
    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_reactions(self) -> int:
        return len(self.reactions)

    @property
    def rates(self) -> np.ndarray:
        return np.array([r.rate for r in self.reactions], dtype=float)

    def to_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CRNN weights `(w_in, ln_k, w_out)`, rows reactions and columns species.

        `w_in[j, i]` is the order of reaction j in species i, `ln_k[j]` the log
        rate constant, `w_out[j, i]` = products - reactants (net stoichiometry).
        """
        index = {s: i for i, s in enumerate(self.species)}
        w_in = np.zeros((self.n_reactions, self.n_species))
        w_out = np.zeros((self.n_reactions, self.n_species))
        for j, r in enumerate(self.reactions):
            for s, c in r.reaction_orders.items():
                w_in[j, index[s]] = c
            for s, c in r.reactants.items():
                w_out[j, index[s]] -= c
            for s, c in r.products.items():
                w_out[j, index[s]] += c
        return w_in, np.log(self.rates), w_out

    def with_species(self, species: Sequence[str]) -> Mechanism:
        """The same reactions over `species` (a superset, possibly reordered)."""
        return Mechanism(tuple(species), self.reactions)

    def format(self, digits: int = 3, rate_digits: int = 3) -> str:
        return "\n".join(r.format(digits, rate_digits) for r in self.reactions)

    def table(self, digits: int = 3):
        """A pandas DataFrame, one row per reaction: equation, rate, orders and total order."""
        import pandas as pd

        rows = [
            {
                "equation": r.format(digits).split("  k=")[0],
                "rate": r.rate,
                "orders": ", ".join(f"{s}:{o:.{digits}f}" for s, o in r.reaction_orders.items()),
                "total order": r.total_order,
            }
            for r in self.reactions
        ]
        return pd.DataFrame(rows, columns=["equation", "rate", "orders", "total order"])

    def __str__(self) -> str:
        return self.format()
