"""The ``--perceptual`` choice of every stage with a perceptual (VGG-19) loss, checked without TensorFlow.

``vgg19`` (ImageNet weights via Keras, downloaded once to the Keras cache), a path to a local ``.h5``
weights file of the same network, ``none``, or ``auto`` (``vgg19`` when the weights are already in the
Keras cache, else ``none``). :func:`fedsim_tf.losses.generation.perceptual_backbone` turns a checked
choice into the feature network.
"""

from __future__ import annotations

import os

from fedsim_tf.errors import UserInputError

PERCEPTUAL_SPECS_HELP = "vgg19 | PATH.h5 | none | auto"
NAMED_SPECS: tuple[str, ...] = ("vgg19", "none", "auto")


def check_perceptual_spec(spec: str, flag: str = "--perceptual") -> str:
    """Return ``spec`` when it is a named choice or an existing file.

    Raises:
        UserInputError: naming ``flag`` when ``spec`` is neither.
    """
    if spec not in NAMED_SPECS and not os.path.isfile(spec):
        raise UserInputError(f"{flag}={spec}: no such weights file (expected {PERCEPTUAL_SPECS_HELP})")
    return spec
