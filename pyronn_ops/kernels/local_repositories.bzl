"""Local repositories for building and testing the op library with Bazel and no network fetches.

`offline_stand_ins()`: Bazel 4's own tool set-up (C++, Java and Python toolchains, test rules)
loads `@rules_cc//cc:defs.bzl`, `@rules_java//java:defs.bzl`, `@rules_proto//proto:defs.bzl`,
`@rules_python//python:defs.bzl` and `@remote_coverage_tools`, which Bazel would download; these
stand-ins forward those names to Bazel's built-in rules (and offer no coverage reports).

`local_tensorflow` runs `pyronn_ops/kernels/tf_flags.py --paths` with the project's Python
(`$PYRONN_PYTHON`, default `<workspace>/.venv/bin/python`, the interpreter `make` installs) and
generates:

* `@local_tensorflow//:tensorflow_framework`: a cc_library with TensorFlow's include directory
  (as a system include) and `libtensorflow_framework.so.2`, plus TensorFlow's preprocessor
  definitions (C++ ABI, Eigen alignment), for building custom ops;
* `@local_tensorflow//:python_toolchain`: a Python toolchain running that interpreter, so that
  `py_test` targets import the installed TensorFlow.
"""

_BUILD = """
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

cc_library(
    name = "tensorflow_framework",
    hdrs = glob(["include/**/*.h", "include/**/*.inc", "include/**/*.hpp", "include/Eigen/**", "include/unsupported/**"]),
    includes = ["include"],
    srcs = ["{library}"],
    defines = {defines},
)

py_runtime(
    name = "venv_python",
    interpreter_path = "{python}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":venv_python",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _local_tensorflow_impl(repository_ctx):
    workspace = repository_ctx.path(Label("//:WORKSPACE")).dirname
    python = repository_ctx.os.environ.get("PYRONN_PYTHON", "{}/.venv/bin/python".format(workspace))
    if not repository_ctx.path(python).exists:
        fail("local_tensorflow: Python {} not found: run `make test` once (it creates .venv) or set PYRONN_PYTHON".format(python))
    script = repository_ctx.path(Label("//pyronn_ops/kernels:tf_flags.py"))
    result = repository_ctx.execute([python, str(script), "--paths"], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.return_code != 0:
        fail("local_tensorflow: {} could not import TensorFlow:\n{}".format(python, result.stderr))
    lines = result.stdout.strip().split("\n")
    include_dir, library_dir, library = lines[0], lines[1], lines[2]
    defines = lines[3].split(" ") if len(lines) > 3 and lines[3] else []
    repository_ctx.symlink(include_dir, "include")
    repository_ctx.symlink("{}/{}".format(library_dir, library), library)
    repository_ctx.file("BUILD", _BUILD.format(library = library, defines = repr(defines), python = python))

local_tensorflow = repository_rule(
    implementation = _local_tensorflow_impl,
    environ = ["PYRONN_PYTHON"],
    local = True,
)

def _stub_repository_impl(repository_ctx):
    repository_ctx.file("WORKSPACE", "workspace(name = \"{}\")\n".format(repository_ctx.name))
    if "BUILD" not in repository_ctx.attr.files:
        repository_ctx.file("BUILD", "")
    for path, content in repository_ctx.attr.files.items():
        repository_ctx.file(path, content, executable = path.endswith(".sh"))

stub_repository = repository_rule(
    implementation = _stub_repository_impl,
    attrs = {"files": attr.string_dict(doc = "path -> content of every file of the repository")},
)

def _forwarding_defs(rules, prelude = ""):
    """A defs.bzl that exports Bazel's built-in `rules` under their own names."""
    return prelude + "".join(["def {0}(**attrs):\n    native.{0}(**attrs)\n\n".format(rule) for rule in rules])

_PUBLIC = "package(default_visibility = ['//visibility:public'])\n"

def offline_stand_ins():
    """Declare the stand-in repositories (call in the WORKSPACE before anything loads Bazel's tools)."""
    stub_repository(name = "rules_cc", files = {
        "cc/defs.bzl": _forwarding_defs(["cc_binary", "cc_import", "cc_library", "cc_proto_library", "cc_test", "cc_toolchain", "cc_toolchain_suite", "objc_library"]),
        "cc/BUILD": _PUBLIC + "alias(name = 'toolchain_type', actual = '@bazel_tools//tools/cpp:toolchain_type')\n",
    })
    stub_repository(name = "rules_java", files = {
        "java/defs.bzl": _forwarding_defs(["java_binary", "java_import", "java_library", "java_plugin", "java_runtime", "java_test", "java_toolchain"]),
        "java/BUILD": "",
    })
    stub_repository(name = "rules_proto", files = {
        "proto/defs.bzl": _forwarding_defs(["proto_lang_toolchain", "proto_library"]),
        "proto/BUILD": "",
    })
    stub_repository(name = "rules_python", files = {
        "python/defs.bzl": _forwarding_defs(
            ["py_binary", "py_library", "py_runtime", "py_test"],
            prelude = "load('@bazel_tools//tools/python:toolchain.bzl', _py_runtime_pair = 'py_runtime_pair')\n\npy_runtime_pair = _py_runtime_pair\n\n",
        ),
        "python/BUILD": "",
    })
    # every test rule names a coverage report generator; coverage is not offered offline
    stub_repository(name = "remote_coverage_tools", files = {
        "BUILD": _PUBLIC + "sh_binary(name = 'coverage_report_generator', srcs = ['no_coverage.sh'])\n",
        "no_coverage.sh": "#!/bin/sh\necho 'coverage reports need the remote_coverage_tools download' >&2\nexit 1\n",
    })
