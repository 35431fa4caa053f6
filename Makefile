# Two entry points for newcomers: `make run` and `make test` (see README.md).
# Both build pyronn_ops' native op library first when a C++ compiler is present (`make native`);
# without one, pyronn_ops runs its XLA kernels.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

KERNELS := pyronn_ops/kernels
NATIVE_BUILD := $(KERNELS)/build
NATIVE_LIB := $(NATIVE_BUILD)/pyronn_kernels.so
NATIVE_FLAGS := $(NATIVE_BUILD)/tf_flags
NATIVE_HEADERS := $(wildcard $(KERNELS)/*.h)
# GCC 12 leaves vector gathers out of generic tuning: ask for them where the compiler knows the switch
GATHER_TUNING := -mtune-ctrl=use_gather_2parts,use_gather_4parts,use_gather
NATIVE_CXXFLAGS = -O3 -fPIC -Wall -Wextra $(shell $(CXX) $(GATHER_TUNING) -x c++ -fsyntax-only /dev/null 2>/dev/null && echo $(GATHER_TUNING))
# nvcc (CUDA kernels) is used only when TensorFlow itself is a CUDA build
NVCC ?= nvcc
NVCC_ARCH ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80

.PHONY: run test test-all bench clean native native-if-compiler flower-demo

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# --- pyronn_ops native kernels (TensorFlow custom op, g++ with tf.sysconfig flags) ---
native: $(NATIVE_LIB)

native-if-compiler: $(STAMP)
	@if command -v $(CXX) >/dev/null 2>&1; then $(MAKE) --no-print-directory native; \
	else echo "no C++ compiler ($(CXX)): pyronn_ops runs its XLA kernels"; fi

$(NATIVE_FLAGS): $(STAMP) $(KERNELS)/tf_flags.py
	@mkdir -p $(@D)
	$(PY) $(KERNELS)/tf_flags.py > $@.tmp && mv $@.tmp $@

# with a CUDA build of TensorFlow and nvcc, tf_ops.cc also registers the GPU kernels
CUDA_DEFINES = $$(grep -qx cuda $(NATIVE_FLAGS) && command -v $(NVCC) >/dev/null && echo -DGOOGLE_CUDA=1 -isystem$$(dirname $$(command -v $(NVCC)))/../include)

$(NATIVE_BUILD)/%.o: $(KERNELS)/%.cc $(NATIVE_HEADERS) $(NATIVE_FLAGS)
	$(CXX) $(NATIVE_CXXFLAGS) $$(sed -n 1p $(NATIVE_FLAGS)) $(CUDA_DEFINES) -c $< -o $@

$(NATIVE_BUILD)/cuda_kernels.o: $(KERNELS)/cuda_kernels.cu $(NATIVE_HEADERS) $(NATIVE_FLAGS)
	$(NVCC) -O3 -std=c++17 --compiler-options -fPIC $(NVCC_ARCH) -c $< -o $@

# the CUDA object joins the library when TensorFlow is a CUDA build and nvcc is present;
# written to a temporary name and renamed, so a running process keeps its loaded copy intact
$(NATIVE_LIB): $(NATIVE_BUILD)/cpu_kernels.o $(NATIVE_BUILD)/tf_ops.o $(NATIVE_FLAGS)
	@if grep -qx cuda $(NATIVE_FLAGS) && command -v $(NVCC) >/dev/null; then \
		$(MAKE) --no-print-directory $(NATIVE_BUILD)/cuda_kernels.o && \
		$(CXX) -shared -o $@.tmp $(NATIVE_BUILD)/cpu_kernels.o $(NATIVE_BUILD)/tf_ops.o $(NATIVE_BUILD)/cuda_kernels.o \
			$$(sed -n 2p $(NATIVE_FLAGS)) -L$$(dirname $$(command -v $(NVCC)))/../lib64 -lcudart; \
	else \
		$(CXX) -shared -o $@.tmp $(NATIVE_BUILD)/cpu_kernels.o $(NATIVE_BUILD)/tf_ops.o $$(sed -n 2p $(NATIVE_FLAGS)); \
	fi && mv $@.tmp $@

run: $(STAMP) native-if-compiler
	$(PY) -m fedsim_tf.main --stage=pretrain

test: $(STAMP) native-if-compiler
	$(PY) -m pytest -q

test-all: $(STAMP) native-if-compiler
	$(PY) -m pytest -q -m ""

bench: $(STAMP) native-if-compiler
	for name in projector shape phantoms pretrain segment data_preprocess; do $(PY) -m bench.$$name || exit 1; done

# a local try-out of the Flower federation: one server and three hospital processes on the phantom hospitals
# (TLS on 127.0.0.1, generated credentials), a few demo-sized rounds; every process is stopped at the end
flower-demo: $(STAMP)
	$(PY) -m fedsim_tf.federation.flower.demo --flower_settings=flags/flower_demo.cfg --work_dir=runs/flower-demo

clean:
	rm -rf $(VENV) .pytest_cache $(NATIVE_BUILD)
