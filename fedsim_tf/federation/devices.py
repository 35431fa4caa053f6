"""One device per site for the in-process federation: logical CPUs, GPUs or logical GPUs.

TensorFlow fixes its logical devices when it first initialises them (the first tensor, model,
dataset or ``tf.config.list_logical_devices`` call). :func:`configure_site_devices` must therefore
run at program start, before anything touches TensorFlow's devices; called later it raises a
:class:`RuntimeError` that says so, unless the devices it would create already exist. It lists the
devices it made, which initialises them: set thread counts (``tf.config.threading``) before it.

* ``kind="CPU"``: the host CPU is split into ``sites`` logical CPU devices (they share the process's
  thread pools, so sites do not get their own cores).
* ``kind="GPU"``: the first ``sites`` GPUs when there are that many; otherwise the first GPU is split
  into ``sites`` logical GPUs of ``gpu_memory_mb`` each.
* ``kind="auto"``: GPU when a GPU is visible, else CPU.
"""

from __future__ import annotations

import tensorflow as tf

KINDS = ("auto", "CPU", "GPU")


def _too_late(sites: int, kind: str, existing: list[str]) -> RuntimeError:
    return RuntimeError(
        f"configure_site_devices({sites}, {kind!r}) must run before TensorFlow initialises its devices (before "
        f"any tensor, model, dataset or tf.config.list_logical_devices call); they are already initialised as "
        f"{existing}: call it first thing in the program"
    )


def configure_site_devices(sites: int, kind: str = "auto", gpu_memory_mb: int | None = None) -> list[str]:
    """Make one device per site and return their names (site ``i`` -> ``names[i]``).

    Args:
        sites: number of sites (replicas), at least 1.
        kind: ``"CPU"``, ``"GPU"`` or ``"auto"``.
        gpu_memory_mb: memory of each logical GPU when one GPU is split (required then).

    Returns:
        ``sites`` device names such as ``"/device:CPU:1"``.

    Raises:
        ValueError: bad ``sites``/``kind``, no GPU for ``kind="GPU"``, or a GPU split without
            ``gpu_memory_mb``.
        RuntimeError: TensorFlow's devices are already initialised with another layout.
    """
    if sites < 1:
        raise ValueError(f"configure_site_devices needs at least 1 site, got {sites}")
    if kind not in KINDS:
        raise ValueError(f"configure_site_devices kind must be one of {KINDS}, got {kind!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "auto":
        kind = "GPU" if gpus else "CPU"
    if kind == "GPU" and not gpus:
        raise ValueError("configure_site_devices(kind='GPU'): no GPU is visible to TensorFlow")
    if kind == "GPU" and len(gpus) >= sites:
        return [device.name for device in tf.config.list_logical_devices("GPU")[:sites]]
    if kind == "GPU" and gpu_memory_mb is None:
        raise ValueError(f"configure_site_devices: splitting one GPU into {sites} logical GPUs needs gpu_memory_mb")
    physical = gpus[0] if kind == "GPU" else tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(physical)
    if len(current or [None]) != sites:
        config = tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory_mb if kind == "GPU" else None)
        try:
            tf.config.set_logical_device_configuration(physical, [config] * sites)
        except RuntimeError as error:
            raise _too_late(sites, kind, [d.name for d in tf.config.list_logical_devices(kind)]) from error
    names = [device.name for device in tf.config.list_logical_devices(kind)]
    if len(names) < sites:
        raise _too_late(sites, kind, names)
    return names[:sites]
