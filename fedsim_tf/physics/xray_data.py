"""Tabulated X-ray mass attenuation coefficients of the elements found in tissue, contrast and filters.

Total mass attenuation coefficients ``mu/rho`` in cm^2/g (coherent + incoherent scattering +
photo-electric absorption) of 16 elements at 35 energies from 10 to 150 keV, four significant
digits. Source: the Elam, Ravel & Sieber (2002) cross-section database as shipped in the
``xraydb`` package (version 4.5.8), read once to write this table; the package is not a
dependency. For water these values agree with NIST XCOM / Hubbell & Seltzer to better than
0.1 % (0.8098 / 0.2269 / 0.1929 / 0.1707 cm^2/g at 20 / 50 / 70 / 100 keV).

The only absorption edge inside the range is iodine's K edge at 33.169 keV: the energy is listed
twice, first with the value just below the edge, then just above it. Between table energies the
coefficients are interpolated linearly in ``log(mu/rho)`` versus ``log(E)`` (the usual way of
using such tables; the error against the full database is below 0.8 % everywhere in the range).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

K_EDGE_IODINE_KEV = 33.169

ENERGIES_KEV: tuple[float, ...] = (
    10, 12.5, 15, 17.5, 20, 22.5, 25, 27.5, 30, 32, 33.169, 33.169, 34, 36, 38, 40, 42.5, 45, 47.5, 50, 55,
    60, 65, 70, 75, 80, 85, 90, 95, 100, 110, 120, 130, 140, 150,
)
"""Table energies (keV); :data:`K_EDGE_IODINE_KEV` appears twice (below, then above the edge)."""

MASS_ATTENUATION: dict[str, tuple[float, ...]] = {
    "H": (
        0.3854, 0.3805, 0.3765, 0.3729, 0.3695, 0.3662, 0.3631, 0.36, 0.357, 0.3547, 0.3534, 0.3534, 0.3524,
        0.3502, 0.348, 0.3458, 0.3432, 0.3406, 0.338, 0.3355, 0.3307, 0.326, 0.3216, 0.3173, 0.3131, 0.3091,
        0.3052, 0.3015, 0.2979, 0.2944, 0.2878, 0.2816, 0.2758, 0.2703, 0.2651
    ),
    "C": (
        2.373, 1.278, 0.8074, 0.5723, 0.442, 0.3637, 0.3136, 0.2799, 0.2562, 0.2419, 0.235, 0.235, 0.2306,
        0.2215, 0.2139, 0.2076, 0.2011, 0.1957, 0.191, 0.1871, 0.1805, 0.1753, 0.171, 0.1672, 0.164, 0.161,
        0.1583, 0.1558, 0.1535, 0.1514, 0.1474, 0.1438, 0.1405, 0.1375, 0.1347
    ),
    "N": (
        3.879, 2.034, 1.236, 0.8382, 0.6179, 0.4859, 0.4019, 0.3458, 0.3067, 0.2834, 0.2722, 0.2722, 0.2651,
        0.2505, 0.2386, 0.2288, 0.2187, 0.2105, 0.2037, 0.198, 0.1888, 0.1817, 0.1761, 0.1714, 0.1674,
        0.1639, 0.1608, 0.1579, 0.1553, 0.1529, 0.1486, 0.1448, 0.1414, 0.1382, 0.1353
    ),
    "O": (
        5.953, 3.083, 1.836, 1.211, 0.8653, 0.6581, 0.5265, 0.4388, 0.3779, 0.3419, 0.3247, 0.3246, 0.3138,
        0.2914, 0.2733, 0.2585, 0.2435, 0.2314, 0.2215, 0.2133, 0.2004, 0.1907, 0.1832, 0.1772, 0.1721,
        0.1679, 0.1641, 0.1608, 0.1578, 0.1551, 0.1504, 0.1462, 0.1425, 0.1392, 0.1361
    ),
    "Na": (
        15.57, 8.031, 4.694, 3.003, 2.057, 1.489, 1.128, 0.8867, 0.7199, 0.6215, 0.5747, 0.5745, 0.5451,
        0.4846, 0.4362, 0.3969, 0.3575, 0.3262, 0.301, 0.2804, 0.2491, 0.2268, 0.2103, 0.1976, 0.1877,
        0.1796, 0.173, 0.1674, 0.1627, 0.1585, 0.1516, 0.1459, 0.1412, 0.1371, 0.1335
    ),
    "Mg": (
        21.06, 10.88, 6.357, 4.054, 2.763, 1.986, 1.49, 1.159, 0.9305, 0.7957, 0.7314, 0.7312, 0.6908,
        0.608, 0.5418, 0.488, 0.4342, 0.3915, 0.3572, 0.3292, 0.2869, 0.257, 0.235, 0.2184, 0.2055, 0.1951,
        0.1867, 0.1797, 0.1737, 0.1686, 0.1602, 0.1536, 0.1481, 0.1434, 0.1394
    ),
    "P": (
        40.36, 21.11, 12.39, 7.897, 5.354, 3.811, 2.822, 2.16, 1.7, 1.429, 1.299, 1.299, 1.218, 1.051,
        0.9175, 0.8095, 0.7015, 0.616, 0.5475, 0.4918, 0.4081, 0.3494, 0.307, 0.2754, 0.2513, 0.2324,
        0.2173, 0.2051, 0.195, 0.1865, 0.1731, 0.163, 0.1551, 0.1486, 0.1432
    ),
    "S": (
        50.14, 26.34, 15.5, 9.895, 6.71, 4.772, 3.528, 2.693, 2.113, 1.771, 1.607, 1.607, 1.504, 1.293,
        1.124, 0.9873, 0.8505, 0.7423, 0.6555, 0.585, 0.4792, 0.4053, 0.352, 0.3123, 0.2821, 0.2586, 0.2399,
        0.2248, 0.2124, 0.202, 0.1858, 0.1738, 0.1644, 0.1568, 0.1506
    ),
    "Cl": (
        57.25, 30.22, 17.84, 11.41, 7.74, 5.505, 4.066, 3.1, 2.426, 2.028, 1.838, 1.837, 1.718, 1.472,
        1.276, 1.116, 0.9573, 0.8313, 0.7303, 0.6484, 0.5253, 0.4394, 0.3775, 0.3316, 0.2967, 0.2696,
        0.2482, 0.2309, 0.2167, 0.205, 0.1868, 0.1733, 0.163, 0.1547, 0.148
    ),
    "K": (
        79.07, 42.12, 25.02, 16.07, 10.93, 7.781, 5.744, 4.371, 3.412, 2.845, 2.573, 2.572, 2.401, 2.051,
        1.769, 1.541, 1.312, 1.131, 0.9857, 0.8678, 0.6911, 0.5678, 0.4791, 0.4134, 0.3636, 0.3252, 0.2948,
        0.2705, 0.2508, 0.2345, 0.2094, 0.1912, 0.1775, 0.1668, 0.1582
    ),
    "Ca": (
        93.4, 49.97, 29.79, 19.17, 13.06, 9.303, 6.871, 5.228, 4.08, 3.398, 3.072, 3.071, 2.866, 2.444,
        2.105, 1.83, 1.555, 1.337, 1.162, 1.019, 0.8065, 0.6579, 0.5508, 0.4717, 0.4118, 0.3655, 0.3292,
        0.3001, 0.2765, 0.2571, 0.2274, 0.2059, 0.1898, 0.1773, 0.1674
    ),
    "Fe": (
        170.7, 93.78, 57.09, 37.29, 25.68, 18.45, 13.7, 10.46, 8.177, 6.811, 6.154, 6.152, 5.737, 4.881,
        4.191, 3.629, 3.063, 2.614, 2.252, 1.957, 1.515, 1.205, 0.9816, 0.8164, 0.6915, 0.5952, 0.5198,
        0.4597, 0.4113, 0.3717, 0.3118, 0.2693, 0.2381, 0.2146, 0.1964
    ),
    "Ar": (
        63.15, 33.48, 19.83, 12.7, 8.63, 6.138, 4.531, 3.45, 2.696, 2.251, 2.038, 2.037, 1.903, 1.628,
        1.407, 1.228, 1.049, 0.9071, 0.7934, 0.7012, 0.5629, 0.4664, 0.3969, 0.3453, 0.3063, 0.276, 0.2521,
        0.2329, 0.2172, 0.2043, 0.1843, 0.1696, 0.1585, 0.1497, 0.1427
    ),
    "Al": (
        26.21, 13.6, 7.955, 5.066, 3.442, 2.461, 1.836, 1.418, 1.128, 0.9577, 0.8764, 0.8761, 0.825, 0.7202,
        0.6364, 0.5684, 0.5004, 0.4466, 0.4033, 0.3682, 0.3151, 0.2778, 0.2506, 0.2301, 0.2143, 0.2018,
        0.1917, 0.1833, 0.1764, 0.1704, 0.1608, 0.1533, 0.1473, 0.1422, 0.1378
    ),
    "Cu": (
        216, 121.7, 74.05, 48.67, 33.8, 24.42, 18.2, 13.94, 10.91, 9.102, 8.229, 8.226, 7.675, 6.535, 5.614,
        4.861, 4.103, 3.498, 3.011, 2.613, 2.013, 1.593, 1.289, 1.064, 0.8941, 0.763, 0.6602, 0.5783,
        0.5123, 0.4585, 0.377, 0.3195, 0.2775, 0.246, 0.2217
    ),
    "I": (
        162.6, 89.52, 55.12, 36.38, 25.43, 18.49, 13.93, 10.79, 8.562, 7.208, 6.554, 35.82, 33.62, 29.01,
        25.23, 22.1, 18.88, 16.26, 14.11, 12.32, 9.563, 7.577, 6.116, 5.016, 4.171, 3.51, 2.986, 2.565,
        2.223, 1.942, 1.515, 1.211, 0.99, 0.8243, 0.6978
    ),
}
"""Element symbol -> ``mu/rho`` (cm^2/g) at :data:`ENERGIES_KEV`."""

TABLE_RANGE_KEV: tuple[float, float] = (ENERGIES_KEV[0], ENERGIES_KEV[-1])


def _segments(energies_kev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the table interval of every energy and its log-log interpolation weight; energies
    at or above the iodine edge use the interval that starts at the upper edge value."""
    table = np.asarray(ENERGIES_KEV)
    index = np.searchsorted(table, energies_kev, side="right") - 1
    index = np.clip(index, 0, len(table) - 2)
    index = np.where(table[index] == table[index + 1], index + 1, index)
    lo, hi = np.log(table[index]), np.log(table[index + 1])
    return index, (np.log(energies_kev) - lo) / (hi - lo)


def element_mass_attenuation(element: str, energies_kev: np.ndarray | float) -> np.ndarray:
    """``mu/rho`` (cm^2/g) of one element.

    Args:
        element: a symbol of :data:`MASS_ATTENUATION` (``"H"``, ..., ``"I"``).
        energies_kev: array of any shape, keV, inside :data:`TABLE_RANGE_KEV`.

    Returns:
        float64 array of the shape of ``energies_kev``.

    Raises:
        ValueError: unknown element or an energy outside the table.
    """
    if element not in MASS_ATTENUATION:
        raise ValueError(f"element {element!r} is not tabulated; known: {', '.join(MASS_ATTENUATION)}")
    energies = np.asarray(energies_kev, dtype=np.float64)
    lo, hi = TABLE_RANGE_KEV
    if energies.size and (energies.min() < lo or energies.max() > hi or not np.all(np.isfinite(energies))):
        raise ValueError(f"energies must lie in [{lo}, {hi}] keV, got {energies.min()}..{energies.max()}")
    index, weight = _segments(energies)
    values = np.log(np.asarray(MASS_ATTENUATION[element]))
    return np.exp(values[index] + weight * (values[index + 1] - values[index]))


def mixture_mass_attenuation(mass_fractions: Mapping[str, float], energies_kev: np.ndarray | float) -> np.ndarray:
    """``mu/rho`` (cm^2/g) of a compound or mixture by the mixture rule ``sum_i w_i (mu/rho)_i``.

    Args:
        mass_fractions: element symbol -> mass fraction (any positive scale; normalised to 1).
        energies_kev: array of any shape, keV.

    Returns:
        float64 array of the shape of ``energies_kev``.
    """
    total = float(sum(mass_fractions.values()))
    if not total > 0 or min(mass_fractions.values()) < 0:
        raise ValueError(f"mass fractions must be >= 0 with a positive sum, got {dict(mass_fractions)}")
    return sum(w / total * element_mass_attenuation(el, energies_kev) for el, w in mass_fractions.items())
