"""pyronn_ops: PYRO-NN-compatible cone-beam CT operators and Keras layers for TensorFlow 2 (CPU and GPU).

A standalone library (it never imports ``fedsim_tf``). Axis orders: volumes ``[B, Z, Y, X]``,
sinograms ``[B, N, H, W]``; lengths in mm, angles in radians.
"""

from pyronn_ops.geometry import GeometryCone3D
from pyronn_ops.trajectory import CONVENTIONS, circular_trajectory_3d
from pyronn_ops.backends import BACKENDS
from pyronn_ops.ops import GRAD_MODES, cone_backprojection3d, cone_projection3d
from pyronn_ops.layers import ConeBackprojection3D, ConeProjection3D
from pyronn_ops.reference import (
    reference_backprojection,
    reference_backprojection_adjoint,
    reference_projection,
    reference_projection_adjoint,
)
from pyronn_ops.filters import FILTERS, WINDOWS, filter_kernel, padded_width, ram_lak, ram_lak_3D, ram_lak_fft, ramp, window
from pyronn_ops.weights import cosine_weights_3d, fan_angles, parker_weight, parker_weights_3d, scan_angles
from pyronn_ops.phantoms import Ellipsoid, cube, ellipsoid, shepp_logan_3d, shepp_logan_ellipsoids, sphere, voxelize_ellipsoids
from pyronn_ops.analytic import analytic_ellipsoid_projection
from pyronn_ops.fdk import fdk_reconstruction, fdk_weights, filter_sinogram
