"""Print the compiler and linker flags of the installed TensorFlow for building the op library.

Used by ``make native`` (three lines: compile flags, link flags, ``cuda`` or ``cpu``) and by the
Bazel repository rule in ``pyronn_ops/kernels/local_repositories.bzl`` (``--paths``: include directory,
library directory, framework library file name and the preprocessor definitions, one per line).
TensorFlow's include directory is passed with ``-isystem`` so that its own headers' warnings stay
out of our build log.

Usage:
    python pyronn_ops/kernels/tf_flags.py            # make native
    python pyronn_ops/kernels/tf_flags.py --paths    # Bazel
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    import tensorflow as tf

    if sys.argv[1:] == ["--paths"]:
        library = next(flag for flag in tf.sysconfig.get_link_flags() if flag.startswith("-l:"))[3:]
        print(tf.sysconfig.get_include())
        print(tf.sysconfig.get_lib())
        print(library)
        print(" ".join(flag[2:] for flag in tf.sysconfig.get_compile_flags() if flag.startswith("-D")))
        return
    compile_flags = [f"-isystem{flag[2:]}" if flag.startswith("-I") else flag for flag in tf.sysconfig.get_compile_flags()]
    print(" ".join(compile_flags))
    print(" ".join(tf.sysconfig.get_link_flags()))
    print("cuda" if tf.sysconfig.get_build_info().get("is_cuda_build") else "cpu")


if __name__ == "__main__":
    main()
