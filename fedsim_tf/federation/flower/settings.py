"""The federation's settings: one flagfile with the flags of ``--stage=federated`` (model, GLO, GAN, rounds),
the same file at the server and at every site (``--flower_settings``, the one flag the server and site
commands share), read into a :class:`~fedsim_tf.stages.federated.FederatedConfig` by :func:`federation_config`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

flags.DEFINE_string("flower_settings", "", "Flower: flagfile of the federation's settings (the flags of "
                    "--stage=federated: model, GLO, GAN and round settings; the same file at the server and at every "
                    "site).")


def federation_config(flagfile: str, extra: Sequence[str] = ()) -> object:
    """The :class:`~fedsim_tf.stages.federated.FederatedConfig` of ``flagfile`` plus ``extra`` flags (a site's
    ``--data_dir`` and ``--work_dir``), parsed afresh (earlier flag values are forgotten).

    Raises:
        UserInputError: an unreadable flagfile or bad flag values (naming the flag).
    """
    from fedsim_tf.cli import expand_flagfiles
    from fedsim_tf.errors import UserInputError
    from fedsim_tf.stages import federated

    argv = expand_flagfiles([f"--flagfile={flagfile}", *extra])
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["fedsim_tf.federation.flower", *argv])
    except flags.Error as error:
        raise UserInputError(f"--flower_settings={flagfile}: {error}") from error
    return federated.config_from_flags()
