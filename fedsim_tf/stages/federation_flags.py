"""Where the sites of an in-process federation run (``federated``, ``segment --mode=direct_fl``): one device
per site, configured before TensorFlow initialises its devices.

TensorFlow fixes its logical devices when it first initialises them, so a stage that federates calls
:func:`site_devices` first thing in its ``run()`` -- before it reads any volume (the phantom hospitals
may be generated with TensorFlow in the process) -- with the number of sites of the command line
(:func:`fedsim_tf.stages.inputs.site_count`). The command line itself is checked before that, without
TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from absl import flags

from fedsim_tf.errors import UserInputError

DEVICE_KINDS: tuple[str, ...] = ("auto", "CPU", "GPU")

flags.DEFINE_enum("fed_devices", "auto", list(DEVICE_KINDS), "Federation: one device per site: CPU (the CPU split "
                  "into logical devices), GPU (one GPU per site, or one GPU split into logical GPUs of "
                  "--fed_gpu_memory_mb) or auto (GPU when one is visible).")
flags.DEFINE_integer("fed_gpu_memory_mb", 0, "Federation: memory (MB) of each site's logical GPU when one GPU is "
                     "split among the sites (needed then).", lower_bound=0)

FLAGS = flags.FLAGS


@dataclass(frozen=True)
class DeviceConfig:
    """``kind`` (:data:`DEVICE_KINDS`) and the memory of a logical GPU (0: not given)."""

    kind: str = "auto"
    gpu_memory_mb: int = 0


def device_config_from_flags() -> DeviceConfig:
    """The federation's device flags."""
    return DeviceConfig(FLAGS.fed_devices, FLAGS.fed_gpu_memory_mb)


def site_devices(config: DeviceConfig, sites: int) -> list[str]:
    """Configure one device per site (TensorFlow loads here) and return their names, site ``i`` -> ``[i]``.

    Raises:
        UserInputError: no GPU with ``--fed_devices=GPU``, or a GPU split without ``--fed_gpu_memory_mb``.
        RuntimeError: TensorFlow's devices were initialised before with another layout.
    """
    from fedsim_tf.federation.devices import configure_site_devices

    try:
        return configure_site_devices(sites, config.kind, config.gpu_memory_mb or None)
    except ValueError as error:
        raise UserInputError(f"--fed_devices={config.kind}: {error} (--fed_gpu_memory_mb)") from error
