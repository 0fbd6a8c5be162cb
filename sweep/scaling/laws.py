"""The scaling-law forms, written so that the optimiser sees O(1), weakly correlated parameters.

- ``multiplicative`` (the paper's): ``Y = A N^-alpha V^-beta + D``
- ``additive``: ``Y = A N^-alpha + B V^-beta + D``
- ``threshold``: ``Y = A N^-alpha / (1 + (V / V_t)^gamma) + D``: flat in V
  below ``V_t``, a power law ``V^-gamma`` above it, a smooth step in ``log V``
  between. It contains the paper's form (``V_t`` below the data), so a fit
  that puts ``V_t`` inside the measured range says the error falls as a
  threshold in V, not as a power law.

N is in billions of parameters (the unit the public ``A`` and ``B`` refer to).
Each cell sits at centred log coordinates ``u = log(N / N0)``, ``w = log(V / V0)``
(geometric means of the data), and a scale is stored as the log of its term *at
the centre of the data*, which removes most of the correlation between ``A``
and the exponents.

Every form is a sum of positive terms ``exp(T_k(theta))`` plus ``D``. That one
shape gives both spaces the fitter works in, batched over many parameter
vectors at once (multi-start, bootstrap, cross-validation)::

    f, jac = evaluate(MULTIPLICATIVE, thetas, design.u, design.w, "linear")  # (B, n), (B, n, P)
    logf, jac = evaluate(ADDITIVE, thetas, u, w, "log")  # log f by log-sum-exp, never log(sum)

so log-space residuals stay finite and exact where a term under- or overflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweep.scaling.settings import FitBounds

BILLION = 1e9

# The power term at the data's centre lies between 1e-8 (no measurable effect)
# and 10x the largest value (far above any error in [0, 1]).
_SCALE_RANGE = (1e-8, 10.0)
# The threshold's steepness: below 0.05 the step spans more than any grid of
# token counts; above 10 it is a jump between two measured V.
_GAMMA_BOX = (0.05, 10.0)
# How far (in log V) outside the measured V the threshold may sit: far below,
# the form is the paper's; far above, error does not depend on V.
_THRESHOLD_MARGIN = 3.0
# At most this many token-count levels place the threshold's starts.
_THRESHOLD_STARTS = 8


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

    def subset(self, keep: np.ndarray) -> Design:
        """The same frame (same N0, V0) restricted to some cells."""
        return Design(self.u[keep], self.w[keep], self.log_n0_billions, self.log_v0)


class _Law:
    """What every form shares: evaluation through its terms, public parameters, starts."""

    name = ""
    names: tuple[str, ...] = ()
    public_names: tuple[str, ...] = ()
    d_index = -1
    label = ""

    def log_terms(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``T`` (B, n, K): the log of each positive term, for parameter rows ``theta`` (B, P)."""
        raise NotImplementedError

    def contract(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, wk: np.ndarray) -> np.ndarray:
        """``sum_k wk[..., k] * dT_k / dtheta`` (B, n, P); the D column is left 0."""
        raise NotImplementedError

    def nonlinear_lattice(self, starts: tuple[float, ...], design: Design) -> list[np.ndarray]:
        """Start values of the parameters that are not linear scales, one vector per start."""
        raise NotImplementedError

    def box(self, design: Design, y_max: float, bounds: FitBounds, d_box: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def starts(self, exps: tuple[float, ...], design: Design, y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Starting rows (S, P): a lattice of the nonlinear parameters, the linear scales solved.

        For fixed exponents (and threshold) the law is linear in its scales and
        D, so each start is the least-squares solution for them: a start
        already on the right valley floor, not a guess.
        """
        out = []
        for nl in self.nonlinear_lattice(exps, design):
            theta = self._with_nonlinear(nl)
            terms = np.exp(self.log_terms(self._zero_scales(theta)[None], design.u, design.w))[0]  # (n, K) at unit scales
            coef, *_ = np.linalg.lstsq(np.column_stack([terms, np.ones(len(y))]), y, rcond=None)
            theta = self._set_scales(theta, np.log(np.maximum(coef[:-1], 1e-3 * max(np.std(y), 1e-12))), coef[-1])
            out.append(np.clip(theta, lower, upper))
        return np.array(out)

    # The linear parts, per form: where the log-scales and D live in theta.
    scale_index: tuple[int, ...] = ()

    def _with_nonlinear(self, nl: np.ndarray) -> np.ndarray:
        theta = np.zeros(len(self.names))
        others = [i for i in range(len(self.names)) if i not in self.scale_index and i != self.d_index]
        theta[others] = nl
        return theta

    def _zero_scales(self, theta: np.ndarray) -> np.ndarray:
        t = theta.copy()
        t[list(self.scale_index)] = 0.0
        return t

    def _set_scales(self, theta: np.ndarray, log_scales: np.ndarray, d: float) -> np.ndarray:
        t = theta.copy()
        t[list(self.scale_index)] = log_scales
        t[self.d_index] = d
        return t

    def to_public(self, theta: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_public(self, p: dict[str, float], design: Design) -> np.ndarray:
        raise NotImplementedError


def _scale_box(y_max: float) -> tuple[float, float]:
    ref = max(1.0, y_max)
    return float(np.log(_SCALE_RANGE[0] * ref)), float(np.log(_SCALE_RANGE[1] * ref))


class Multiplicative(_Law):
    """The paper's form: ``Y = A * N^-alpha * V^-beta + D``."""

    name = "multiplicative"
    label = "paper form"
    names = ("log_a", "alpha", "beta", "D")
    public_names = ("alpha", "beta", "A", "D")
    d_index = 3
    scale_index = (0,)

    def log_terms(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (theta[:, 0:1] - theta[:, 1:2] * u - theta[:, 2:3] * w)[..., None]

    def contract(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, wk: np.ndarray) -> np.ndarray:
        c = wk[..., 0]
        return np.stack([c, -c * u, -c * w, np.zeros_like(c)], axis=-1)

    def nonlinear_lattice(self, starts: tuple[float, ...], design: Design) -> list[np.ndarray]:
        return [np.array([a, b]) for a in starts for b in starts]

    def box(self, design: Design, y_max: float, bounds: FitBounds, d_box: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale_box(y_max)
        return np.array([s[0], bounds.alpha[0], bounds.beta[0], d_box[0]]), np.array([s[1], bounds.alpha[1], bounds.beta[1], d_box[1]])

    def to_public(self, theta: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        t = np.asarray(theta, dtype=float)
        alpha, beta = t[..., 1], t[..., 2]
        return {"alpha": alpha, "beta": beta, "A": np.exp(t[..., 0] + alpha * design.log_n0_billions + beta * design.log_v0), "D": t[..., 3]}

    def from_public(self, p: dict[str, float], design: Design) -> np.ndarray:
        log_a = np.log(p["A"]) - p["alpha"] * design.log_n0_billions - p["beta"] * design.log_v0
        return np.array([log_a, p["alpha"], p["beta"], p["D"]], dtype=float)


class Additive(_Law):
    """The additive alternative: ``Y = A * N^-alpha + B * V^-beta + D``."""

    name = "additive"
    label = "additive form"
    names = ("log_a", "alpha", "log_b", "beta", "D")
    public_names = ("alpha", "beta", "A", "B", "D")
    d_index = 4
    scale_index = (0, 2)

    def log_terms(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.stack([theta[:, 0:1] - theta[:, 1:2] * u, theta[:, 2:3] - theta[:, 3:4] * w], axis=-1)

    def contract(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, wk: np.ndarray) -> np.ndarray:
        c0, c1 = wk[..., 0], wk[..., 1]
        return np.stack([c0, -c0 * u, c1, -c1 * w, np.zeros_like(c0)], axis=-1)

    def _with_nonlinear(self, nl: np.ndarray) -> np.ndarray:
        return np.array([0.0, nl[0], 0.0, nl[1], 0.0])

    def nonlinear_lattice(self, starts: tuple[float, ...], design: Design) -> list[np.ndarray]:
        return [np.array([a, b]) for a in starts for b in starts]

    def box(self, design: Design, y_max: float, bounds: FitBounds, d_box: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale_box(y_max)
        lower = np.array([s[0], bounds.alpha[0], s[0], bounds.beta[0], d_box[0]])
        return lower, np.array([s[1], bounds.alpha[1], s[1], bounds.beta[1], d_box[1]])

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
            [np.log(p["A"]) - p["alpha"] * design.log_n0_billions, p["alpha"], np.log(p["B"]) - p["beta"] * design.log_v0, p["beta"], p["D"]],
            dtype=float,
        )


class Threshold(_Law):
    """A smooth step in log V: ``Y = A * N^-alpha / (1 + (V / V_t)^gamma) + D``."""

    name = "threshold"
    label = "threshold form"
    names = ("log_a", "alpha", "gamma", "w_t", "D")
    public_names = ("alpha", "gamma", "V_t", "A", "D")
    d_index = 4
    scale_index = (0,)

    def log_terms(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        z = theta[:, 2:3] * (w - theta[:, 3:4])
        return (theta[:, 0:1] - theta[:, 1:2] * u - np.logaddexp(0.0, z))[..., None]

    def contract(self, theta: np.ndarray, u: np.ndarray, w: np.ndarray, wk: np.ndarray) -> np.ndarray:
        c = wk[..., 0]
        dw = w - theta[:, 3:4]
        sig = 0.5 * (1.0 + np.tanh(0.5 * theta[:, 2:3] * dw))  # logistic, without overflow
        return np.stack([c, -c * u, -c * sig * dw, c * sig * theta[:, 2:3], np.zeros_like(c)], axis=-1)

    def nonlinear_lattice(self, starts: tuple[float, ...], design: Design) -> list[np.ndarray]:
        levels = np.unique(np.round(design.w, 12))
        if levels.size > _THRESHOLD_STARTS:  # not a grid: candidate thresholds at quantiles of V
            levels = np.quantile(design.w, np.linspace(0.0, 1.0, _THRESHOLD_STARTS))
        # Thresholds between measured token counts, and one below them all (the paper's form).
        mids = list((levels[1:] + levels[:-1]) / 2.0) + [levels[0] - 1.0]
        return [np.array([a, g, t]) for a in starts for g in (1.0, 4.0) for t in mids]

    def box(self, design: Design, y_max: float, bounds: FitBounds, d_box: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale_box(y_max)
        lo_w, hi_w = float(design.w.min()) - _THRESHOLD_MARGIN, float(design.w.max()) + _THRESHOLD_MARGIN
        lower = np.array([s[0], bounds.alpha[0], _GAMMA_BOX[0], lo_w, d_box[0]])
        return lower, np.array([s[1], bounds.alpha[1], _GAMMA_BOX[1], hi_w, d_box[1]])

    def to_public(self, theta: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        t = np.asarray(theta, dtype=float)
        alpha = t[..., 1]
        return {
            "alpha": alpha,
            "gamma": t[..., 2],
            "V_t": np.exp(t[..., 3] + design.log_v0),
            "A": np.exp(t[..., 0] + alpha * design.log_n0_billions),
            "D": t[..., 4],
        }

    def from_public(self, p: dict[str, float], design: Design) -> np.ndarray:
        return np.array(
            [np.log(p["A"]) - p["alpha"] * design.log_n0_billions, p["alpha"], p["gamma"], np.log(p["V_t"]) - design.log_v0, p["D"]],
            dtype=float,
        )


MULTIPLICATIVE = Multiplicative()
ADDITIVE = Additive()
THRESHOLD = Threshold()
LAWS: dict[str, _Law] = {law.name: law for law in (MULTIPLICATIVE, ADDITIVE, THRESHOLD)}
Law = _Law


def evaluate(law: Law, theta: np.ndarray, u: np.ndarray, w: np.ndarray, space: str = "linear", jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The law (``space="linear"``) or its log (``"log"``) at rows ``theta`` (B, P) and its Jacobian.

    In log space ``log f`` is a log-sum-exp of the terms' logs and ``log D``,
    and the Jacobian weighs each term by ``exp(T_k - log f)``, so nothing is
    exponentiated and then logged again.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    t = law.log_terms(theta, u, w)
    d = theta[:, law.d_index][:, None]
    if space == "linear":
        e = np.exp(t)
        f = e.sum(-1) + d
        if not jac:
            return f, None
        j = law.contract(theta, u, w, e)
        j[..., law.d_index] = 1.0
        return f, j
    with np.errstate(divide="ignore"):
        log_d = np.log(d)
    m = np.maximum(t.max(-1), log_d)
    f = m + np.log(np.exp(t - m[..., None]).sum(-1) + np.exp(log_d - m))
    if not jac:
        return f, None
    j = law.contract(theta, u, w, np.exp(t - f[..., None]))
    # d log f / dD = 1 / f: capped where f is below what a float holds, so a step stays finite.
    j[..., law.d_index] = np.exp(np.minimum(-f, 700.0))
    return f, j


def predict(law: Law, theta: np.ndarray, design: Design, n_params: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The law in the metric's units at any cells (N in parameters), for rows ``theta`` (B, P) -> (B, n)."""
    u, w = design.coords(np.atleast_1d(n_params), np.atleast_1d(v))
    return evaluate(law, theta, u, w, "linear", jac=False)[0]


def predict_public(law: Law, params: dict[str, float | None], n_params: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """The law from public parameters (A refers to N in billions); unknown exponents count as 0."""
    p = {k: (0.0 if val is None else float(val)) for k, val in params.items()}
    frame = Design(np.zeros(1), np.zeros(1), 0.0, 0.0)
    n_b, vv = np.broadcast_arrays(np.asarray(n_params, dtype=float) / BILLION, np.asarray(v, dtype=float))
    u, w = np.log(n_b.ravel()), np.log(vv.ravel())
    return evaluate(law, law.from_public(p, frame)[None], u, w, "linear", jac=False)[0][0].reshape(n_b.shape)


def paper_error(params: dict[str, float], n_params: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """The paper's law evaluated from public parameters (A refers to N in billions)."""
    n_b = np.asarray(n_params, dtype=float) / BILLION
    return params["A"] * n_b ** -params["alpha"] * np.asarray(v, dtype=float) ** -params["beta"] + params["D"]
