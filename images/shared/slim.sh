#!/bin/sh
# Slim an installed site-packages folder in an image's build stage, before the final stage copies it:
#   slim.sh SITE_PACKAGES [PATH...]
# - removes the packages' own test suites (folders named `tests`; `testing` modules are API and stay), C/C++
#   headers (nothing compiles in a step: the images have no compiler), torch's C++ test binaries and protoc, ONNX's
#   backend test data, LiteRT's WebGPU accelerator and its ahead-of-time compiler plugins for phone NPUs (the
#   steps run models on the CPU interpreter), TensorBoard's web pages (no server runs), onnxruntime's C API library
#   (its Python module has the runtime built in), __pycache__, and each PATH (relative to SITE_PACKAGES; globs
#   allowed);
# - strips symbol tables and debug sections from shared libraries (`strip --strip-unneeded`: the dynamic symbols
#   that loading and linking use stay). Libraries under `*.libs/` and extension modules linked against them
#   (auditwheel-repaired wheels: their RUNPATH names such a folder) are left as they are, because strip can break
#   a file patchelf has rewritten.
# Every stack's smoke test, run at the end of its build, imports the libraries this touches.
set -eu
SP=${1:?usage: slim.sh SITE_PACKAGES [PATH...]}
shift
cd "$SP"
find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
rm -rf tensorflow/include tensorflow_core/include torch/include torch/test onnx/backend/test/data \
    torch/bin/test_* torch/bin/*Test torch/bin/protoc* torch/bin/*.pt torch/bin/*.ptl \
    ai_edge_litert/libLiteRtWebGpuAccelerator.so ai_edge_litert/tools/apply_plugin_main ai_edge_litert/vendors \
    tensorboard/webfiles.zip onnxruntime/capi/libonnxruntime.so.*
for path in "$@"; do
    rm -rf $path
done
find . -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' | while read -r f; do
    if ! readelf -d "$f" 2>/dev/null | grep -q 'R.*PATH.*\.libs'; then
        strip --strip-unneeded "$f" 2>/dev/null || echo "slim: left $f unstripped"
    fi
done
