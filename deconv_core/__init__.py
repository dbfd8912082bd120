"""deconv_core: exact N-d convolution and transposed convolution on a Numba-parallel CPU core.

The transposed convolution is the adjoint (transpose) of the convolution's linear map, not its
inverse; the bias is added after it, per output channel, on every output element.
"""

import os

# Idle OpenMP workers sleep instead of spinning, so they don't steal the cores from the BLAS
# calls that follow a prange (see deconv_core._threads). Must precede Numba's first parallel call;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from deconv_core.api import conv, conv_transpose
from deconv_core.backward import Gradients, conv_backward, conv_transpose_backward
from deconv_core.errors import DeconvError, InvalidArgumentError, UnsupportedDtypeError
from deconv_core.explain import Explanation, explain
from deconv_core.plan import (
    CONVENTIONS,
    DATA_FORMATS,
    DTYPES,
    WEIGHT_FORMATS,
    Plan,
    execute,
    plan_conv,
    plan_conv_transpose,
)
from deconv_core.prepared import PreparedWeight, prepare_weight
from deconv_core.restore import richardson_lucy, wiener_deconvolve
from deconv_core.runtime import keep_blas_single_threaded, runtime_info, set_num_threads, warmup
from deconv_core.solve import DeconvolveResult, deconvolve
from deconv_core.values import MAX_VALUE, PADDING_FILLS, PADDING_MODES, ExplicitPadding

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS",
    "DATA_FORMATS",
    "DTYPES",
    "MAX_VALUE",
    "PADDING_FILLS",
    "PADDING_MODES",
    "WEIGHT_FORMATS",
    "DeconvError",
    "DeconvolveResult",
    "Explanation",
    "ExplicitPadding",
    "Gradients",
    "InvalidArgumentError",
    "Plan",
    "PreparedWeight",
    "UnsupportedDtypeError",
    "__version__",
    "conv",
    "conv_backward",
    "conv_transpose",
    "conv_transpose_backward",
    "deconvolve",
    "execute",
    "explain",
    "keep_blas_single_threaded",
    "plan_conv",
    "plan_conv_transpose",
    "prepare_weight",
    "richardson_lucy",
    "runtime_info",
    "set_num_threads",
    "warmup",
    "wiener_deconvolve",
]
