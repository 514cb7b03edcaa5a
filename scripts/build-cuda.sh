#!/usr/bin/env bash
# Builds `dsb --features cuda` for NVIDIA compute capability 9.0 (H100/H200) with CUDA 13.0 from
# PyPI's `nvidia-*` wheels (no system CUDA toolkit, no GPU needed), and packs one portable
# binary for the GPU machine:
#
#   target/cuda-dist/dsb-cuda.gz      the stripped binary, gzipped (scripts/gpu-check.sh unpacks it)
#   target/cuda-dist/BUILD-INFO.txt   toolkit versions, DT_NEEDED, sizes, sha256, build time
#
# The binary links the CUDA libraries dynamically (candle-core builds cudarc with
# "dynamic-linking"), so at run time it needs these sonames on the loader's path:
# libcuda.so.1 (the driver's), libcudart.so.13, libcublas.so.13 (which needs libcublasLt.so.13)
# and libcurand.so.10 (libnvrtc.so.13 is linked but dropped as unused by --as-needed). PyTorch's
# CUDA 13 wheels ship all but the driver's in site-packages/nvidia/cu13/lib; scripts/gpu-check.sh
# puts that on LD_LIBRARY_PATH.
#
# Why CUDA 13.0 exactly: the kernels are shipped as PTX and JIT-compiled by the driver, which
# refuses PTX newer than itself. Driver 580 is CUDA 13.0's, and nvcc 13.0 writes PTX ISA 9.0;
# newer drivers load it too. DSB_CUDA_TOOLKIT picks another CUDA 13 `cuda-toolkit` release.
#
# Usage (from anywhere; about an hour on 2 busy cores the first time, seconds when cached):
#   nice -n 19 bash scripts/build-cuda.sh
# Environment (all optional):
#   DSB_CUDA_PREFIX      where the CUDA wheels are installed (a venv; default ~/.cache/dsb-cuda13)
#   DSB_CUDA_TOOLKIT     the cuda-toolkit metapackage version (default 13.0.2 = nvcc 13.0.88)
#   DSB_CUDA_TARGET_DIR  cargo's target directory (default target/cuda, kept between builds)
#   CUDA_COMPUTE_CAP     default 90 (built as sm_90a: H100/H200 only)
#   JOBS                 parallel jobs of cargo and of the kernel compiler (default 2)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
prefix=${DSB_CUDA_PREFIX:-$HOME/.cache/dsb-cuda13}
toolkit=${DSB_CUDA_TOOLKIT:-13.0.2}
target_dir=${DSB_CUDA_TARGET_DIR:-$repo/target/cuda}
dist=$repo/target/cuda-dist
jobs=${JOBS:-2}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
t0=$SECONDS

say() { printf '[build-cuda] %s\n' "$*" >&2; }
die() {
  printf '[build-cuda] ERROR: %s\n' "$*" >&2
  exit 1
}

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup)"
command -v python3 >/dev/null || die "python3 not found (needed to install the CUDA wheels)"
command -v c++ >/dev/null || die "no C++ compiler (c++): nvcc needs one as its host compiler (apt-get install g++)"
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"

# 1. The CUDA 13 compiler, headers and libraries from PyPI, in a venv of their own.
if [[ ! -x $prefix/bin/python ]]; then
  say "creating the venv $prefix"
  python3 -m venv "$prefix" || die "python3 -m venv failed (apt-get install python3-venv)"
fi
stamp=$prefix/.dsb-cuda-toolkit
if [[ ! -f $stamp || $(cat "$stamp") != "$toolkit" ]]; then
  say "installing cuda-toolkit==$toolkit (nvcc, nvvm, crt, cccl, cudart, cublas, curand, nvrtc) from PyPI"
  "$prefix/bin/pip" install --disable-pip-version-check -q \
    "cuda-toolkit[nvcc,nvvm,crt,cccl,cudart,cublas,curand,nvrtc]==$toolkit" ||
    die "pip could not install cuda-toolkit==$toolkit"
  echo "$toolkit" >"$stamp"
fi
nv=$("$prefix/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[[ -x $nv/bin/nvcc ]] || die "no nvcc in $nv/bin (is cuda-toolkit==$toolkit a CUDA 13 release?)"
nvcc_version=$("$nv/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
say "nvcc $nvcc_version at $nv/bin/nvcc"
major=${nvcc_version%%.*}
minor=${nvcc_version#*.}

# 2. A link directory: the unversioned names the linker wants (the wheels ship only the
#    sonames) and a stub libcuda.so.1 for the driver API (the GPU machine's driver provides the
#    real one). The stub defines every cu* function that cudarc can bind, as NVIDIA's own
#    lib64/stubs/libcuda.so does; it is never loaded at run time.
link=$prefix/link/lib
mkdir -p "$link"
for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
  [[ -e $nv/lib/$so ]] || die "$nv/lib/$so is missing"
  ln -sf "$nv/lib/$so" "$link/${so%%.so*}.so"
  ln -sf "$nv/lib/$so" "$link/$so" # the name in the libraries' own DT_NEEDED (libcublasLt.so.13)
done
cargo fetch --locked -q || die "cargo fetch failed"
cudarc_version=$(sed -n '/^name = "cudarc"$/{n;s/version = "\(.*\)"/\1/p;}' Cargo.lock)
cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" | head -n 1)
[[ -f $cudarc_src/src/driver/sys/mod.rs ]] || die "cudarc $cudarc_version's source not found in the cargo registry"
stub_c=$prefix/link/libcuda-stub.c
grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc_src/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u |
  awk '{printf "int %s(void) { return 999; }\n", $1}' >"$stub_c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$stub_c" || die "could not build the libcuda stub"
# Under its soname too, so that `scripts/gpu-check.sh --dry-run` can start the CUDA binary on a
# machine without a driver (its CPU path calls no cu* function).
ln -sf libcuda.so "$link/libcuda.so.1"
say "link directory $link: $(ls "$link" | tr '\n' ' ')"

# 3. The build. nvcc on PATH (cudarc reads its version) and in NVCC (candle-kernels' cudaforge);
#    CUDA_HOME is only the link search path (cudarc adds $CUDA_HOME/lib).
export PATH=$nv/bin:$PATH
export NVCC=$nv/bin/nvcc
export CUDA_HOME=$prefix/link
export CUDARC_CUDA_VERSION=${major}0${minor}0
export CUDAFORGE_THREADS=$jobs
export CARGO_TARGET_DIR=$target_dir
say "cargo build --release --features cuda --bin dsb (sm_${CUDA_COMPUTE_CAP}, CUDA $nvcc_version, -j $jobs, target $target_dir)"
tb=$SECONDS
nice -n 19 cargo build --release --locked --features cuda --bin dsb -j "$jobs" ||
  die "cargo build failed (see above)"
build_s=$((SECONDS - tb))

# 4. The artifact: stripped, gzipped, its dynamic dependencies checked against the wheels.
# Only the .gz and BUILD-INFO.txt go into $dist, the folder the GPU run carries.
bin=$target_dir/dsb-cuda-stripped
cp "$target_dir/release/dsb" "$bin"
strip "$bin"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
say "DT_NEEDED: $(echo "$needed" | tr '\n' ' ')"
missing=$(LD_LIBRARY_PATH=$nv/lib ldd "$bin" | awk '/not found/ {print $1}' | grep -v '^libcuda\.so\.1$' || true)
[[ -z $missing ]] || die "libraries not found even with the wheels on the path: $missing"
rm -rf "$dist"
mkdir -p "$dist"
gzip -9 -c "$bin" >"$dist/dsb-cuda.gz"
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
glibcxx=$(objdump -T "$bin" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -n 1 || true)
{
  echo "dsb CUDA build (scripts/build-cuda.sh)"
  echo "commit:           $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built:            $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores"
  echo "toolkit:          cuda-toolkit==$toolkit from PyPI, nvcc $("$nv/bin/nvcc" --version | tail -n 1)"
  echo "compute cap:      $CUDA_COMPUTE_CAP (candle's PTX and libmoe.a for sm_${CUDA_COMPUTE_CAP}a)"
  echo "cudarc:           $cudarc_version, CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, dynamic-linking"
  echo "cargo build:      ${build_s} s (whole script $((SECONDS - t0)) s)"
  echo "binary:           $(stat -c %s "$bin") bytes stripped, $(stat -c %s "$dist/dsb-cuda.gz") bytes gzipped"
  echo "sha256 (binary):  $(sha256sum "$bin" | cut -d' ' -f1)"
  echo "needs glibc:      $glibc, libstdc++ $glibcxx"
  echo "DT_NEEDED:"
  echo "$needed" | sed 's/^/  /'
} >"$dist/BUILD-INFO.txt"
cat "$dist/BUILD-INFO.txt" >&2
say "done in $((SECONDS - t0)) s: $dist/dsb-cuda.gz"
