"""Kernel-ready weights: a route's transformed weight, made once and passed back to ``execute``.

Some routes turn the weight into another form on every call before they compute: the phase
route of transposed convolution its window-conv matrix (7 MB and about 4 ms for benchmark case
T3), Winograd its ``G g G^T`` transform, the flip route the flipped kernel. A caller that runs
the same weight again (a layer; the server's weight cache) can keep that form::

    plan = deconv_core.plan_conv_transpose(x.shape, w.shape, dtype="float32", stride=32, ...)
    ready = deconv_core.prepare_weight(plan, w)
    y = deconv_core.execute(plan, x, w, prepared=ready)   # bit-identical, without the transform

A prepared weight belongs to the plan's :attr:`~deconv_core.Plan.weight_key` (route, compute
dtype, per-image geometry): any batch size and every batch slice of that plan accept it, and
``execute`` refuses it for another plan. Its array is read-only; it is the caller's promise that
``weight`` still holds the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deconv_core import _engine
from deconv_core.plan import Plan, kernel_weight

__all__ = ["PreparedWeight", "prepare_weight"]


@dataclass(frozen=True, eq=False)
class PreparedWeight:
    """A plan's kernel-ready weight.

    Attributes
    ----------
    key : tuple
        The :attr:`~deconv_core.Plan.weight_key` it was made for.
    array : ndarray or None
        The route's form of the weight (read-only), or None when the route uses the weight as
        it is (then passing it changes nothing).
    """

    key: tuple[Any, ...]
    array: np.ndarray | None

    @property
    def nbytes(self) -> int:
        """Bytes held by the form (0 when there is none)."""
        return 0 if self.array is None else int(self.array.nbytes)


def prepare_weight(plan: Plan, weight: Any) -> PreparedWeight:
    """The kernel-ready form of ``weight`` for ``plan`` (see the module docstring).

    Parameters
    ----------
    plan : Plan
        From ``plan_conv`` or ``plan_conv_transpose``.
    weight : array-like
        Of ``plan.weight_shape`` and the plan's dtype.

    Returns
    -------
    PreparedWeight

    Raises
    ------
    InvalidArgumentError, UnsupportedDtypeError
        The weight does not match the plan (as for ``execute``).
    """
    w3 = kernel_weight(plan, weight)
    return PreparedWeight(plan.weight_key, _engine.prepare(w3, plan.engine_geometry, plan.route))
