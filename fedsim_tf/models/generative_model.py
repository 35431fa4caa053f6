"""The generative model's on-disk artefacts: what ``pretrain``, ``semi``, ``federated`` and ``pretrain_gan``
write and the later stages read.

A generator run is keyed by what it was trained on (:class:`TrainingSet`: fold, seed and the
labelled training cases of every site), so runs of different folds or label sizes never share a
folder and a later stage can only find the run of its own fold, label sizes and seed::

    <work_dir>/pretrain/<TrainingSet.name>/      (GeneratorRun; <work_dir>/semi/... and <work_dir>/federated/...
                                                  from --stage=semi and --stage=federated)
        model.json            GenerativeModel + TrainingSet (what rebuilds G_S, G_M and the simulator)
        checkpoints/          generators, codes, optimisers (tf.train.Checkpoint; resume point)
        latent_gaussian.npz   Gaussian fitted to the learned codes (written when training ends)
        ssm.npz               the shape model fitted with --ssm=build
    <work_dir>/pretrain_gan/<TrainingSet.name>/<site>-<material>/
        gan.json              GANSettings, slice size, site, material + TrainingSet (:class:`GANRun`)
        checkpoints/          G_GAN, its discriminator and their optimisers
    <work_dir>/federated/<TrainingSet.name>/<site>-learned/
        gan.json, checkpoints/    the site's GAN of the federated run (conditioned on the federated G_M)

A GAN belongs to the stage that trained it (:attr:`GANRun.stage`): ``pretrain_gan`` GANs learn from the
``pretrain`` run's ``G_M`` (``synthesize --generator=pretrain`` and ``--generator=semi`` use them), the
``federated`` stage's from its own shared ``G_M``, so the two never share a folder although they are
trained on the same training set.

Plain Python and NumPy only (no TensorFlow): stages check for a missing or mismatching artefact
before TensorFlow loads. The networks are built from the record by
:func:`fedsim_tf.models.generators.build_generators` and
:func:`fedsim_tf.physics.ct_simulator.simulator_for`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsim_tf.atomic import write_json_atomic
from fedsim_tf.data.preprocess import coarse_grid
from fedsim_tf.errors import UserInputError
from fedsim_tf.grid import Grid
from fedsim_tf.physics.simulated_scanner import SimulatedScanner
from fedsim_tf.shape.parameters import FiniteDifferenceSteps, ShapeBounds
from fedsim_tf.shape.ssm import StatisticalShapeModel, default_ssm
from fedsim_tf.training.gan_settings import GANSettings

if TYPE_CHECKING:  # the protocol lives beside the TensorFlow shape op
    from fedsim_tf.shape.shape_op import ShapeModel

GENERATOR_STAGES: tuple[str, ...] = ("pretrain", "semi", "federated")
"""Stages that train ``G_S``/``G_M`` and write a generator run (``semi`` continues ``pretrain``'s;
``federated`` trains them across the sites, paper Sec. 2.3)."""
GAN_STAGE = "pretrain_gan"
GAN_STAGES: tuple[str, ...] = (GAN_STAGE, "federated")
"""Stages that train site GANs (:attr:`GANRun.stage`)."""
GAN_STAGE_OF_GENERATOR: dict[str, str] = {"pretrain": GAN_STAGE, "semi": GAN_STAGE, "federated": "federated"}
"""The stage whose GANs go with a generator run's ``G_S``/``G_M`` when synthesizing."""
MODEL_FILE = "model.json"
MODEL_FORMAT = "fedsim-generative-model-v2"
GAN_FILE = "gan.json"
GAN_FORMAT = "fedsim-site-gan-v1"


@dataclass(frozen=True)
class TrainingSet:
    """What a generative model was trained on.

    Attributes:
        fold: cross-validation fold.
        seed: the run's ``--seed``.
        labelled: site name -> the labelled training case ids of that fold (in split order).
    """

    fold: int
    seed: int
    labelled: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labelled", {str(s): tuple(str(c) for c in ids) for s, ids in self.labelled.items()})

    @property
    def name(self) -> str:
        """Folder name, e.g. ``fold0_seed0_CT20-L4_CT34LC-L6``."""
        sites = "_".join(f"{site}-L{len(ids)}" for site, ids in self.labelled.items())
        return f"fold{self.fold}_seed{self.seed}_{sites}"

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.fold, "seed": self.seed, "labelled": {s: list(ids) for s, ids in self.labelled.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainingSet":
        return cls(int(data["fold"]), int(data["seed"]), {s: tuple(ids) for s, ids in data["labelled"].items()})


@dataclass(frozen=True)
class GenerativeModel:
    """Everything needed to rebuild ``G_S``, ``G_M`` and the simulator.

    Attributes:
        latent_dim: code size.
        n_modes: SSM modes (``G_S`` outputs ``n_modes + 7``).
        bounds: shape-parameter ranges.
        label_grid: the generated label maps' grid (world RAS+ mm).
        coarse_size: material/coarse CT grid edge.
        scanner: CT simulator settings.
        fd_steps: finite-difference steps of the shape op.
        ssm: ``default``, or the path of the ``.npz`` shape model used.
    """

    latent_dim: int
    n_modes: int
    bounds: ShapeBounds
    label_grid: Grid
    coarse_size: int
    scanner: SimulatedScanner
    fd_steps: FiniteDifferenceSteps
    ssm: str

    @property
    def coarse_grid(self) -> Grid:
        """The material / coarse CT grid (block means of the label grid)."""
        return coarse_grid(self.label_grid, self.coarse_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "n_modes": self.n_modes,
            "bounds": dataclasses.asdict(self.bounds),
            "label_grid": {"shape": list(self.label_grid.shape), "affine": self.label_grid.affine.tolist()},
            "coarse_size": self.coarse_size,
            "scanner": dataclasses.asdict(self.scanner),
            "fd_steps": dataclasses.asdict(self.fd_steps),
            "ssm": self.ssm,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GenerativeModel":
        bounds = dict(data["bounds"])
        bounds["translation_centre_mm"] = tuple(bounds.get("translation_centre_mm", (0.0, 0.0, 0.0)))
        return cls(
            latent_dim=int(data["latent_dim"]),
            n_modes=int(data["n_modes"]),
            bounds=ShapeBounds(**bounds),
            label_grid=Grid(tuple(data["label_grid"]["shape"]), np.asarray(data["label_grid"]["affine"])),
            coarse_size=int(data["coarse_size"]),
            scanner=SimulatedScanner(**data["scanner"]),
            fd_steps=FiniteDifferenceSteps(**data["fd_steps"]),
            ssm=str(data["ssm"]),
        )


@dataclass(frozen=True)
class GeneratorRun:
    """The folder of one run of ``G_S``/``G_M`` training (``pretrain``, or ``semi`` after it) and its files.

    Args:
        work_dir: the run's ``--work_dir``.
        training_set: what the run trains on.
        stage: the stage that writes it, one of :data:`GENERATOR_STAGES`.
    """

    work_dir: str
    training_set: TrainingSet
    stage: str = "pretrain"

    def __post_init__(self) -> None:
        if self.stage not in GENERATOR_STAGES:
            raise ValueError(f"GeneratorRun.stage must be one of {GENERATOR_STAGES}, got {self.stage!r}")

    @property
    def folder(self) -> str:
        return os.path.join(self.work_dir, self.stage, self.training_set.name)

    @property
    def model_path(self) -> str:
        return os.path.join(self.folder, MODEL_FILE)

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.folder, "checkpoints")

    @property
    def gaussian_path(self) -> str:
        return os.path.join(self.folder, "latent_gaussian.npz")

    @property
    def ssm_path(self) -> str:
        return os.path.join(self.folder, "ssm.npz")

    def write_model(self, model: GenerativeModel) -> None:
        """Record ``model`` in ``model.json``, or check it against the record of an earlier run.

        Raises:
            UserInputError: the folder holds a run with other model settings.
        """
        record = {"format": MODEL_FORMAT, "trained_on": self.training_set.to_json(), "model": model.to_json()}
        if os.path.isfile(self.model_path):
            saved = _read_json(self.model_path).get("model", {})
            current = json.loads(json.dumps(record["model"]))
            changed = sorted(key for key in current if saved.get(key) != current[key])
            if changed:
                raise UserInputError(
                    f"{self.model_path}: an earlier {self.stage} run used different settings ({', '.join(changed)}); "
                    "use another --work_dir or delete that run"
                )
        write_json_atomic(self.model_path, record)

    def load_model(self, needed_by: str) -> GenerativeModel:
        """The recorded model of the run (``needed_by``: the stage asking, for messages).

        Raises:
            UserInputError: no such run (naming the runs that do exist), an unreadable record, or a
                record trained on other volumes than this run's training set.
        """
        if not os.path.isfile(self.model_path):
            raise UserInputError(f"{needed_by}: no {self.stage} model for {self.training_set.name} ({self.model_path} "
                                 f"missing{_other_runs(self.work_dir, self.stage)}); run --stage={self.stage} with the "
                                 "same --fold, --label_size, --seed and --single_site first")
        data = _read_json(self.model_path)
        try:
            if data.get("format") != MODEL_FORMAT:
                raise KeyError("format")
            trained_on = TrainingSet.from_json(data["trained_on"])
            model = GenerativeModel.from_json(data["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserInputError(f"{self.model_path}: not a {MODEL_FORMAT} record ({type(error).__name__}: {error}); "
                                 f"delete the run and run --stage={self.stage} again") from error
        if trained_on != self.training_set:
            raise UserInputError(f"{self.model_path}: trained on {trained_on.to_json()}, but {needed_by} needs "
                                 f"{self.training_set.to_json()}; delete the run and run --stage={self.stage} again")
        return model

    def require_gaussian(self, needed_by: str) -> str:
        """The path of the fitted latent Gaussian; UserInputError when pre-training has not finished."""
        if not os.path.isfile(self.gaussian_path):
            raise UserInputError(f"{needed_by}: {self.gaussian_path} missing; let --stage={self.stage} finish first")
        return self.gaussian_path


@dataclass(frozen=True)
class GANRun:
    """The folder of one site's GAN (``G_GAN`` and its discriminator) and its record.

    Args:
        work_dir: the run's ``--work_dir``.
        training_set: what the generative model trains on (the GAN uses the site's part of it).
        site: the site whose appearance the GAN learns.
        material: ``learned`` (conditioned on ``G_M``'s upsampled coarse CT) or ``fixmat`` (on the Fix-Mat
            simulation at full resolution).
        stage: the stage that trains it, one of :data:`GAN_STAGES`: ``pretrain_gan`` (on the ``pretrain``
            run's ``G_M``) or ``federated`` (on the federated ``G_M``, inside the federated run's folder).
    """

    work_dir: str
    training_set: TrainingSet
    site: str
    material: str
    stage: str = GAN_STAGE

    def __post_init__(self) -> None:
        if self.stage not in GAN_STAGES:
            raise ValueError(f"GANRun.stage must be one of {GAN_STAGES}, got {self.stage!r}")

    @property
    def folder(self) -> str:
        return os.path.join(self.work_dir, self.stage, self.training_set.name, f"{self.site}-{self.material}")

    @property
    def record_path(self) -> str:
        return os.path.join(self.folder, GAN_FILE)

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.folder, "checkpoints")

    def _record(self, settings: GANSettings, image_size: int) -> dict[str, Any]:
        return {"format": GAN_FORMAT, "trained_on": self.training_set.to_json(), "site": self.site,
                "material": self.material, "stage": self.stage, "image_size": int(image_size), "settings": dataclasses.asdict(settings)}

    def write_record(self, settings: GANSettings, image_size: int) -> None:
        """Record the GAN's settings, or check them against an earlier run's record.

        Raises:
            UserInputError: the folder holds a GAN with other settings.
        """
        record = self._record(settings, image_size)
        if os.path.isfile(self.record_path):
            saved = _read_json(self.record_path)
            changed = sorted(key for key in ("image_size", "settings") if saved.get(key) != record[key])
            if changed:
                raise UserInputError(f"{self.record_path}: an earlier {self.stage} run used different settings "
                                     f"({', '.join(changed)}); use another --work_dir or delete that run")
        write_json_atomic(self.record_path, record)

    def load_record(self, needed_by: str) -> tuple[GANSettings, int]:
        """``(settings, image_size)`` of a trained GAN with at least one checkpoint.

        Raises:
            UserInputError: no such GAN (naming the GANs that exist), no checkpoint, an unreadable
                record, or one trained on other volumes.
        """
        if not os.path.isfile(self.record_path):
            command = (f"--stage=pretrain_gan --site={self.site} --material={self.material}" if self.stage == GAN_STAGE
                       else f"--stage={self.stage}")
            raise UserInputError(f"{needed_by}: no {self.material} GAN of site {self.site} for "
                                 f"{self.training_set.name} ({self.record_path} missing"
                                 f"{_other_gans(self.work_dir, self.stage)}); run {command} with the same --fold, "
                                 "--label_size, --seed and --single_site first")
        data = _read_json(self.record_path)
        try:
            if data.get("format") != GAN_FORMAT:
                raise KeyError("format")
            trained_on = TrainingSet.from_json(data["trained_on"])
            settings, image_size = GANSettings(**data["settings"]), int(data["image_size"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserInputError(f"{self.record_path}: not a {GAN_FORMAT} record ({type(error).__name__}: {error}); "
                                 "delete the GAN and train it again") from error
        if trained_on != self.training_set:
            raise UserInputError(f"{self.record_path}: trained on {trained_on.to_json()}, but {needed_by} needs "
                                 f"{self.training_set.to_json()}; delete the GAN and train it again")
        if not os.path.isfile(os.path.join(self.checkpoint_dir, "checkpoint")):
            raise UserInputError(f"{needed_by}: {self.checkpoint_dir} holds no checkpoint; let --stage={self.stage} "
                                 "run first")
        return settings, image_size


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: not a JSON object")
    return data


def _found(base: str, depth: int, file: str, what: str) -> str:
    """``"; <what> found: a, b"`` for the folders ``depth`` levels below ``base`` holding ``file``."""
    pattern = os.path.join(base, *["*"] * depth, file)
    runs = sorted(os.path.relpath(os.path.dirname(path), base) for path in glob.glob(pattern))
    return f"; {what} found: {', '.join(runs)}" if runs else ""


def _other_runs(work_dir: str, stage: str) -> str:
    return _found(os.path.join(work_dir, stage), 1, MODEL_FILE, "runs")


def _other_gans(work_dir: str, stage: str) -> str:
    return _found(os.path.join(work_dir, stage), 2, GAN_FILE, "GANs")


def generation_grid(case_grid: Grid, ssm: ShapeModel) -> Grid:
    """The generated label maps' grid: the cases' grid shape and spacing, axis-aligned RAS, centred on
    the SSM mean's centre (so generated and real masks compare voxel by voxel in the heart frame)."""
    fov = tuple(float(n * s) for n, s in zip(case_grid.shape, case_grid.spacing_zyx))
    return Grid.centred(case_grid.shape, fov, tuple(float(c) for c in ssm.mean.centre()))


def load_shape_model(record: str) -> ShapeModel:
    """The shape model a :class:`GenerativeModel` names: ``default`` or a ``.npz`` path."""
    if record == "default":
        return default_ssm()
    if not os.path.isfile(record):
        raise UserInputError(f"{record}: the shape model used for pre-training is missing")
    return StatisticalShapeModel.load(record)
