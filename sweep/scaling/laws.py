"""The two scaling-law forms, written in a parametrisation that optimises well.

The paper's form is ``Y = A * N^-alpha * V^-beta + D`` and the additive
alternative is ``Y = A * N^-alpha + B * V^-beta + D``, with N in billions of
parameters (the unit the public parameters ``A`` and ``B`` refer to) and V the
number of visual tokens.

The optimiser never sees ``A`` directly. Each cell is placed at centred log
coordinates ``u = log(N / N0)`` and ``w = log(V / V0)`` (N0, V0 the geometric
means of the data), and a scale parameter is stored as the log of the power
term *at the centre of the data*. That removes most of the correlation between
``A`` and the exponents (``log A`` moves by ``alpha * log N0`` whenever alpha
moves) and makes every parameter O(1)::

    design = Design.from_cells(n_params, v)
    law = MULTIPLICATIVE
    theta = law.from_public({"A": 0.3, "alpha": 0.3, "beta": 0.06, "D": 0.2}, design)
    pred, jac = law.predict_jac(theta, design.u, design.w)
    law.to_public(theta, design)  # back to A, alpha, beta, D

``predict_jac`` returns the analytic Jacobian, so the fitter gets exact
gradients at the cost of one ``exp`` per term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BILLION = 1e9

# Bounds, in the internal parametrisation. Exponents are kept non-negative
# because a law in which error grows with model size or token count is not the
# law being tested; an estimate stuck at 0 is reported, not hidden. The power
# term at the data's centre lies between 1e-8 (no measurable effect) and e^2.3
# (far above any error in [0, 1]); D is an error rate, so it lives in [0, 1].
LOG_SCALE_BOUNDS = (np.log(1e-8), np.log(10.0))
EXPONENT_BOUNDS = (0.0, 5.0)
D_BOUNDS = (0.0, 1.0)


@dataclass(frozen=True)
class Design:
    """Centred log coordinates of the cells: what the laws are evaluated on."""

    u: np.ndarray  # log(N / N0), N in parameters
    w: np.ndarray  # log(V / V0)
    log_n0_billions: float  # log of the geometric-mean N, in billions
    log_v0: float  # log of the geometric-mean V

    @classmethod
    def from_cells(cls, n_params: np.ndarray, v: np.ndarray) -> Design:
        log_n = np.log(np.asarray(n_params, dtype=float) / BILLION)
        log_v = np.log(np.asarray(v, dtype=float))
        n0, v0 = float(log_n.mean()), float(log_v.mean())
        return cls(u=log_n - n0, w=log_v - v0, log_n0_billions=n0, log_v0=v0)

    def coords(self, n_params: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of other cells (held-out points, plot grids) in this design's frame."""
        u = np.log(np.asarray(n_params, dtype=float) / BILLION) - self.log_n0_billions
        w = np.log(np.asarray(v, dtype=float)) - self.log_v0
        return u, w


class Multiplicative:
    """The paper's form: ``Y = A * N^-alpha * V^-beta + D``."""

    name = "multiplicative"
    names = ("log_a", "alpha", "beta", "D")
    public_names = ("alpha", "beta", "A", "D")
    exponent_index = {"alpha": 1, "beta": 2}
    lower = np.array([LOG_SCALE_BOUNDS[0], EXPONENT_BOUNDS[0], EXPONENT_BOUNDS[0], D_BOUNDS[0]])
    upper = np.array([LOG_SCALE_BOUNDS[1], EXPONENT_BOUNDS[1], EXPONENT_BOUNDS[1], D_BOUNDS[1]])

    def predict(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.exp(theta[0] - theta[1] * u - theta[2] * w) + theta[3]

    def predict_jac(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.exp(theta[0] - theta[1] * u - theta[2] * w)
        jac = np.empty((u.size, 4))
        jac[:, 0] = g
        jac[:, 1] = -u * g
        jac[:, 2] = -w * g
        jac[:, 3] = 1.0
        return g + theta[3], jac

    def value_grad(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, dloss: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        """Loss and its gradient in one pass; ``dloss(pred) -> (value, dvalue/dpred)``.

        Cheaper than ``predict_jac``: no Jacobian matrix is built, which
        matters in the bootstrap's hundred thousand evaluations.
        """
        g = np.exp(theta[0] - theta[1] * u - theta[2] * w)
        value, c = dloss(g + theta[3])
        cg = c * g
        return value, np.array([cg.sum(), -(cg @ u), -(cg @ w), c.sum()])

    def to_public(self, theta: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        """Public parameters; ``theta`` may be one vector or a stack of them (bootstrap)."""
        t = np.asarray(theta, dtype=float)
        log_a, alpha, beta, d = t[..., 0], t[..., 1], t[..., 2], t[..., 3]
        a = np.exp(log_a + alpha * design.log_n0_billions + beta * design.log_v0)
        return {"alpha": alpha, "beta": beta, "A": a, "D": d}

    def from_public(self, p: dict[str, float], design: Design) -> np.ndarray:
        log_a = np.log(p["A"]) - p["alpha"] * design.log_n0_billions - p["beta"] * design.log_v0
        return np.array([log_a, p["alpha"], p["beta"], p["D"]], dtype=float)

    def starts(self, u: np.ndarray, w: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Starting points: a small lattice of exponents, the linear parts solved exactly.

        For fixed exponents the law is linear in (scale, D), so each start is
        the least-squares (scale, D) for its exponents: a start already on the
        right valley floor, not a guess.
        """
        out = []
        for alpha in (0.05, 0.3, 1.0):
            for beta in (0.02, 0.2, 0.8):
                g = np.exp(-alpha * u - beta * w)
                scale, d = _linear_fit(np.column_stack([g, np.ones_like(g)]), y)
                out.append(self._clip(np.array([_safe_log(scale), alpha, beta, d])))
        return out

    def _clip(self, theta: np.ndarray) -> np.ndarray:
        return np.clip(theta, self.lower, self.upper)


class Additive:
    """The additive alternative: ``Y = A * N^-alpha + B * V^-beta + D``."""

    name = "additive"
    names = ("log_a", "alpha", "log_b", "beta", "D")
    public_names = ("alpha", "beta", "A", "B", "D")
    exponent_index = {"alpha": 1, "beta": 3}
    lower = np.array([LOG_SCALE_BOUNDS[0], EXPONENT_BOUNDS[0], LOG_SCALE_BOUNDS[0], EXPONENT_BOUNDS[0], D_BOUNDS[0]])
    upper = np.array([LOG_SCALE_BOUNDS[1], EXPONENT_BOUNDS[1], LOG_SCALE_BOUNDS[1], EXPONENT_BOUNDS[1], D_BOUNDS[1]])

    def predict(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.exp(theta[0] - theta[1] * u) + np.exp(theta[2] - theta[3] * w) + theta[4]

    def predict_jac(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gn = np.exp(theta[0] - theta[1] * u)
        gv = np.exp(theta[2] - theta[3] * w)
        jac = np.empty((u.size, 5))
        jac[:, 0] = gn
        jac[:, 1] = -u * gn
        jac[:, 2] = gv
        jac[:, 3] = -w * gv
        jac[:, 4] = 1.0
        return gn + gv + theta[4], jac

    def value_grad(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, dloss: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        gn = np.exp(theta[0] - theta[1] * u)
        gv = np.exp(theta[2] - theta[3] * w)
        value, c = dloss(gn + gv + theta[4])
        cn, cv = c * gn, c * gv
        return value, np.array([cn.sum(), -(cn @ u), cv.sum(), -(cv @ w), c.sum()])

    def to_public(self, theta: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        t = np.asarray(theta, dtype=float)
        alpha, beta = t[..., 1], t[..., 3]
        return {
            "alpha": alpha,
            "beta": beta,
            "A": np.exp(t[..., 0] + alpha * design.log_n0_billions),
            "B": np.exp(t[..., 2] + beta * design.log_v0),
            "D": t[..., 4],
        }

    def from_public(self, p: dict[str, float], design: Design) -> np.ndarray:
        return np.array(
            [
                np.log(p["A"]) - p["alpha"] * design.log_n0_billions,
                p["alpha"],
                np.log(p["B"]) - p["beta"] * design.log_v0,
                p["beta"],
                p["D"],
            ],
            dtype=float,
        )

    def starts(self, u: np.ndarray, w: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        out = []
        for alpha in (0.05, 0.3, 1.0):
            for beta in (0.02, 0.2, 0.8):
                gn, gv = np.exp(-alpha * u), np.exp(-beta * w)
                a, b, d = _linear_fit(np.column_stack([gn, gv, np.ones_like(gn)]), y)
                out.append(np.clip(np.array([_safe_log(a), alpha, _safe_log(b), beta, d]), self.lower, self.upper))
        return out


MULTIPLICATIVE = Multiplicative()
ADDITIVE = Additive()
LAWS = {law.name: law for law in (MULTIPLICATIVE, ADDITIVE)}
Law = Multiplicative | Additive


def paper_error(params: dict[str, float], n_params: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """The paper's law evaluated from public parameters (A refers to N in billions)."""
    n_b = np.asarray(n_params, dtype=float) / BILLION
    return params["A"] * n_b ** -params["alpha"] * np.asarray(v, dtype=float) ** -params["beta"] + params["D"]


def _linear_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coef


def _safe_log(x: float) -> float:
    # A negative least-squares scale means these exponents fit badly; start
    # from a small positive scale and let the optimiser move.
    return float(np.log(max(x, 1e-3)))
