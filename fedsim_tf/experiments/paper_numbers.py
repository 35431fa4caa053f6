"""The paper's own numbers, for comparison beside ours -- typed once, from Li et al., "Federated Simulation
for Medical Imaging", MICCAI 2020 (arXiv:2009.00668), Table 3 and Table 2. They are the paper's results, not
measurements of this code.

Table 3: test Dice in % (mean ± std over the five folds) of a 3D U-Net per method (rows) and site / label
size (columns); the Upper Bound uses every training label, so the paper gives one value per site.
"""

from __future__ import annotations

SOURCE = "Li et al., Federated Simulation for Medical Imaging, MICCAI 2020 (arXiv:2009.00668)"

TABLE3_COLUMNS: tuple[tuple[str, int], ...] = (
    ("CT20", 4), ("CT20", 8), ("CT34LC", 6), ("CT34LC", 12), ("CT34MC", 6), ("CT34MC", 12))
"""(site, label size) of the paper's Table 3 columns, in its order."""

TABLE3_UPPER_BOUND: dict[str, tuple[float, float]] = {
    "CT20": (89.81, 2.50), "CT34LC": (88.76, 1.82), "CT34MC": (85.75, 2.43)}

TABLE3: dict[str, tuple[tuple[float, float], ...]] = {
    "Lower Bound": ((87.65, 2.20), (86.33, 2.09), (85.25, 4.57), (87.27, 2.52), (85.32, 1.50), (84.65, 2.23)),
    "Ours-Fix-Mat": ((87.87, 4.28), (88.32, 5.11), (86.33, 1.69), (88.32, 1.81), (83.13, 2.19), (84.91, 1.97)),
    "Ours-Pre": ((87.78, 4.28), (91.35, 1.55), (87.39, 2.34), (88.01, 1.30), (85.92, 1.37), (84.91, 1.35)),
    "Ours-Full": ((88.95, 2.97), (91.39, 1.27), (85.91, 3.61), (88.98, 1.86), (84.79, 1.73), (85.13, 2.31)),
    "Direct-FL": ((91.65, 2.69), (92.45, 1.52), (89.34, 1.27), (90.17, 1.40), (87.11, 1.55), (87.29, 1.84)),
    "Ours-Sim-FL": ((90.71, 1.62), (93.45, 1.21), (88.33, 2.10), (90.19, 2.21), (87.15, 1.66), (87.40, 1.71)),
}
"""Method -> (mean, std) in % per column of :data:`TABLE3_COLUMNS` (Upper Bound: :data:`TABLE3_UPPER_BOUND`)."""

TABLE3_BOLD: frozenset[tuple[str, int]] = frozenset({
    ("Ours-Full", 0), ("Ours-Full", 1), ("Ours-Pre", 2), ("Ours-Full", 3), ("Ours-Pre", 4), ("Ours-Full", 5),
    ("Ours-Sim-FL", 1), ("Ours-Sim-FL", 3), ("Ours-Sim-FL", 4), ("Ours-Sim-FL", 5)})
"""(method, column index) printed in bold in the paper (as printed, not recomputed)."""

TABLE2: dict[str, float] = {"Rand Shape + GAN": 67.07, "+ Alpha blend": 68.80, "+ Poisson blend": 76.44,
                            "Ours Fix-Mat": 78.92}
"""Table 2 (CT20, 4 labels, trained only on synthetic data): test Dice in %."""
