"""The cells of the Table 3 protocol and their order (plain Python, no data, no TensorFlow).

A cell is one stage call whose result the protocol caches: a generator run, one site's GAN, one synthetic
set, one segmentation fold. Per label-size setting and fold, in dependency order:

* single-site simulation (paper Sec. 3), per generator -- every site's own (``single_site``, the paper's
  "independently per dataset") or one pooled over the sites: ``pretrain`` -> ``pretrain_gan`` of each of its
  sites with the learned material and with Fix-Mat -> ``semi`` -> ``synthesize`` per site of Ours-Fix-Mat
  (pretrain, fixmat), Ours-Pre (pretrain, learned) and Ours-Full (semi, learned) -> ``novelty`` per site
  (the Ours-Full set's nearest training volumes, paper Fig. 3) -> ``segment`` per site: Lower Bound, the
  three fine-tuned rows, Upper Bound;
* federated simulation: ``federated`` -> ``synthesize --generator=federated`` per site -> ``segment
  --mode=sim_fl`` (every site) -> ``segment --mode=direct_fl`` (every site);
* out of distribution (paper Sec. 3): ``ood`` per site A -- A's Upper Bound U-Net tested on A's test
  volumes as they are and as every site's GAN renders them from A's labels and downsampled CT.

The Upper Bound trains on every training label, whatever the label-size setting, so it is one cell per
fold and site (planned with the first setting).

Table 2 (the ablation, paper Sec. 3, in the Ours-Fix-Mat setting, trained only on synthetic data) on one
site, per label-size setting and fold: ``pretrain`` of the site's own generator -> ``pretrain_gan
--material=fixmat`` -> ``synthesize --material=fixmat`` per row (:data:`TABLE2_ROWS`: shape and blend) ->
``segment --mode=synthetic_only`` per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

POOLED = "pooled"
"""Generator name of the generative model learned from every site's labels at once."""

SYNTHETIC_ROWS: dict[str, tuple[str, str]] = {"Ours-Fix-Mat": ("pretrain", "fixmat"),
                                              "Ours-Pre": ("pretrain", "learned"),
                                              "Ours-Full": ("semi", "learned")}
"""Table 3 rows pre-trained on synthetic sets: method -> (generator stage, material)."""
SEGMENT_METHODS: dict[str, str] = {"lower": "Lower Bound", "upper": "Upper Bound", "direct_fl": "Direct-FL",
                                   "sim_fl": "Ours-Sim-FL"}
ROWS: tuple[str, ...] = ("Lower Bound", *SYNTHETIC_ROWS, "Upper Bound", "Direct-FL", "Ours-Sim-FL")
"""Table 3's rows in the paper's order."""
SINGLE_SITE_ROWS: tuple[str, ...] = ROWS[:5]
FEDERATED_ROWS: tuple[str, ...] = ROWS[5:]
GAN_MATERIALS: tuple[str, ...] = ("learned", "fixmat")
NOVELTY_ROW = "Ours-Full"
"""The synthetic set whose novelty the protocol measures (the paper's Fig. 3 shows the full model's samples)."""
TABLE2_ROWS: dict[str, tuple[str, str]] = {"Rand Shape + GAN": ("random", "none"),
                                           "+ Alpha blend": ("random", "alpha"),
                                           "+ Poisson blend": ("random", "poisson"),
                                           "Ours Fix-Mat": ("learned", "none")}
"""Table 2's rows in the paper's order: method -> (``synthesize --shape``, ``--blend``); every one Fix-Mat."""
TABLE2_SITE = "CT20"
"""Table 2's site (the first site when it is absent)."""


@dataclass(frozen=True)
class Cell:
    """One cached step of the protocol.

    Attributes:
        stage: the stage it calls (``pretrain``, ``pretrain_gan``, ``semi``, ``federated``, ``synthesize``,
            ``segment``), or the protocol's own measurements ``novelty`` and ``ood``.
        fold: the cross-validation fold.
        setting: the label-size setting (a ``--label_sizes`` value; ``""``: the run's own); ``""`` for the
            Upper Bound, which uses every label.
        generator: whose generative model: a site name (single-site), :data:`POOLED`, or ``"federated"``;
            ``""`` where none is involved (Lower/Upper Bound, Direct-FL).
        site: the site it works on; ``""`` for a cell over every site.
        method: the Table 3 row a ``segment`` cell fills, or the Table 2 row (:data:`TABLE2_ROWS`) a
            ``synthesize`` or ``segment`` cell is for (``""`` otherwise).
        material: the GAN's or synthetic set's material (``learned``, ``fixmat``); ``""`` otherwise.
        source: the generator stage a synthetic set draws from (``pretrain``, ``semi``, ``federated``).
    """

    stage: str
    fold: int
    setting: str = ""
    generator: str = ""
    site: str = ""
    method: str = ""
    material: str = ""
    source: str = ""

    @property
    def key(self) -> str:
        """A file-name-safe unique name, e.g. ``low_fold0_synthesize_CT20_gen-CT20_pretrain-fixmat``;
        ``:`` and ``,`` of a setting become ``-`` and ``+``."""
        setting = "all-labels" if self.method == "Upper Bound" else self.setting or "default"
        parts = [setting, f"fold{self.fold}", self.stage]
        parts += [p for p in (self.site, f"gen-{self.generator}" if self.generator else "") if p]
        if self.source or self.material:
            parts.append("-".join(p for p in (self.source, self.material) if p))
        if self.method:
            parts.append(self.method.replace(" ", "-"))
        return "_".join(part.replace(":", "-").replace(",", "+") for part in parts)

    @property
    def kind(self) -> str:
        """What the cell's cost depends on (for the ETA): stage, plus the row or material."""
        return "/".join(p for p in (self.stage, self.method, self.material) if p)


def _single_site_chain(fold: int, setting: str, generator: str, sites: Sequence[str]) -> list[Cell]:
    cells = [Cell("pretrain", fold, setting, generator)]
    cells += [Cell("pretrain_gan", fold, setting, generator, site, material=material)
              for material in GAN_MATERIALS for site in sites]
    cells.append(Cell("semi", fold, setting, generator))
    cells += [Cell("synthesize", fold, setting, generator, site, material=material, source=source)
              for site in sites for source, material in SYNTHETIC_ROWS.values()]
    source, material = SYNTHETIC_ROWS[NOVELTY_ROW]
    cells += [Cell("novelty", fold, setting, generator, site, material=material, source=source) for site in sites]
    return cells


def plan_table3(sites: Sequence[str], settings: Sequence[str], folds: Iterable[int], single_site: bool) -> list[Cell]:
    """Every cell of Table 3 in the order they run: settings, then folds, then the chains above.

    Args:
        sites: the site names, in order.
        settings: the label-size settings (``--label_sizes`` values), in order; at least one.
        folds: the folds, in order.
        single_site: each site's generator learns from its own labels (the paper) rather than all pooled.
    """
    cells: list[Cell] = []
    for number, setting in enumerate(settings):
        for fold in folds:
            generators = [(site, [site]) for site in sites] if single_site else [(POOLED, list(sites))]
            for generator, members in generators:
                cells += _single_site_chain(fold, setting, generator, members)
            site_generator = generator_of(sites, single_site)
            for site in sites:
                cells.append(Cell("segment", fold, setting, site=site, method="Lower Bound"))
                cells += [Cell("segment", fold, setting, site_generator[site], site, method, material, source)
                          for method, (source, material) in SYNTHETIC_ROWS.items()]
                if number == 0:
                    cells.append(Cell("segment", fold, "", site=site, method="Upper Bound"))
            cells.append(Cell("federated", fold, setting, "federated"))
            cells += [Cell("synthesize", fold, setting, "federated", site, material="learned", source="federated")
                      for site in sites]
            cells.append(Cell("segment", fold, setting, "federated", method="Ours-Sim-FL"))
            cells.append(Cell("segment", fold, setting, method="Direct-FL"))
            cells += [Cell("ood", fold, setting, site=site) for site in sites]
    return cells


def generator_of(sites: Sequence[str], single_site: bool) -> dict[str, str]:
    """Site -> the generator whose GAN is that site's in the single-site rows: its own, or :data:`POOLED`."""
    return {site: site if single_site else POOLED for site in sites}


def table2_site(sites: Sequence[str]) -> str:
    """Table 2's site among ``sites``: :data:`TABLE2_SITE`, else the first."""
    return TABLE2_SITE if TABLE2_SITE in sites else sites[0]


def plan_table2(sites: Sequence[str], settings: Sequence[str], folds: Iterable[int]) -> list[Cell]:
    """Every cell of Table 2 in the order they run: settings, then folds, then the chain of the module
    docstring on :func:`table2_site`, with that site's own generator.

    Args:
        sites: the site names, in order.
        settings: the label-size settings (``--label_sizes`` values), in order; at least one.
        folds: the folds, in order.
    """
    site = table2_site(sites)
    cells: list[Cell] = []
    for setting in settings:
        for fold in folds:
            cells += [Cell("pretrain", fold, setting, site),
                      Cell("pretrain_gan", fold, setting, site, site, material="fixmat")]
            for stage in ("synthesize", "segment"):
                cells += [Cell(stage, fold, setting, site, site, method, "fixmat", "pretrain")
                          for method in TABLE2_ROWS]
    return cells


def pending(cells: Sequence[Cell], finished: Iterable[str]) -> list[Cell]:
    """The cells whose key is not among ``finished``, in order."""
    done = set(finished)
    return [cell for cell in cells if cell.key not in done]
