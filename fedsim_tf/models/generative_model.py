"""The generative model's on-disk artefact: what ``--stage=pretrain`` writes and every later stage reads.

A pre-training run is keyed by what it was trained on (:class:`TrainingSet`: fold, seed and the
labelled training cases of every site), so runs of different folds or label sizes never share a
folder and a later stage can only find the run of its own fold, label sizes and seed::

    <work_dir>/pretrain/<TrainingSet.name>/
        model.json            GenerativeModel + TrainingSet (what rebuilds G_S, G_M and the simulator)
        checkpoints/          generators, codes, optimisers (tf.train.Checkpoint; resume point)
        latent_gaussian.npz   Gaussian fitted to the learned codes (written when training ends)
        ssm.npz               the shape model fitted with --ssm=build

Plain Python and NumPy only (no TensorFlow): stages check for a missing or mismatching artefact
before TensorFlow loads. The networks are built from the record by
:func:`fedsim_tf.models.generators.build_generators` and
:func:`fedsim_tf.physics.ct_simulator.simulator_for`.
"""

from __future__ import annotations

import dataclasses
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

if TYPE_CHECKING:  # the protocol lives beside the TensorFlow shape op
    from fedsim_tf.shape.shape_op import ShapeModel

PRETRAIN_STAGE = "pretrain"
MODEL_FILE = "model.json"
MODEL_FORMAT = "fedsim-generative-model-v2"


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
class PretrainRun:
    """The folder of one pre-training run and its files.

    Args:
        work_dir: the run's ``--work_dir``.
        training_set: what the run trains on.
    """

    work_dir: str
    training_set: TrainingSet

    @property
    def folder(self) -> str:
        return os.path.join(self.work_dir, PRETRAIN_STAGE, self.training_set.name)

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
                    f"{self.model_path}: an earlier pretrain run used different settings ({', '.join(changed)}); "
                    "use another --work_dir or delete that run"
                )
        write_json_atomic(self.model_path, record)

    def load_model(self, needed_by: str) -> GenerativeModel:
        """The recorded model of a finished pre-training (``needed_by``: the stage asking, for messages).

        Raises:
            UserInputError: no such run (naming the runs that do exist), an unreadable record, or a
                record trained on other volumes than this run's training set.
        """
        if not os.path.isfile(self.model_path):
            raise UserInputError(f"{needed_by}: no pre-trained model for {self.training_set.name} ({self.model_path} "
                                 f"missing{_other_runs(self.work_dir)}); run --stage=pretrain with the same --fold, "
                                 "--label_size and --seed first")
        data = _read_json(self.model_path)
        try:
            if data.get("format") != MODEL_FORMAT:
                raise KeyError("format")
            trained_on = TrainingSet.from_json(data["trained_on"])
            model = GenerativeModel.from_json(data["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserInputError(f"{self.model_path}: not a {MODEL_FORMAT} record ({type(error).__name__}: {error}); "
                                 "delete the run and pre-train again") from error
        if trained_on != self.training_set:
            raise UserInputError(f"{self.model_path}: trained on {trained_on.to_json()}, but {needed_by} needs "
                                 f"{self.training_set.to_json()}; delete the run and pre-train again")
        return model

    def require_gaussian(self, needed_by: str) -> str:
        """The path of the fitted latent Gaussian; UserInputError when pre-training has not finished."""
        if not os.path.isfile(self.gaussian_path):
            raise UserInputError(f"{needed_by}: {self.gaussian_path} missing; let --stage=pretrain finish first")
        return self.gaussian_path


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: not a JSON object")
    return data


def _other_runs(work_dir: str) -> str:
    folder = os.path.join(work_dir, PRETRAIN_STAGE)
    runs = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, MODEL_FILE))) \
        if os.path.isdir(folder) else []
    return f"; runs found: {', '.join(runs)}" if runs else ""



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
