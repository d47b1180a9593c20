"""The codebook lookup of a resident weight as a compiled kernel on x86 CPUs with AVX-512.

XLA's CPU backend emits a b-bit codebook lookup either as a gather (a scalar loop) or, as
`runtime.select_tree` does, as 2^b − 1 vector selects; at 5 bits both cost 1.5-2.5x the int8 -> float32
convert that expands an 8-bit weight. `cpu_lookup.cc` is an XLA FFI handler that does it the way the
hardware can: per 16 weights, the indices assembled from each bit plane's bytes, widened once, looked
up by one register permute (vpermps into 16 entries, vpermi2ps into 32: up to `MAX_BITS` = 5) and
scaled, split over XLA's intra-op thread pool. Its output equals
`PackedArray.expand`'s XLA form bit for bit (the same float32 products).

The kernel is compiled once per source, compiler flags and jaxlib version into the cache folder
(`$GQ_JAX_CACHE`, else `~/.cache/gq_jax`) with the system's C++ compiler (`$CXX`, else `g++`), and
registered with XLA as the CPU target `gq_jax_lookup`. It serves a lookup only where `available()`:
an x86 CPU with AVX-512 F/BW/VL, a compiler that built it, and `GQ_JAX_CPU_LOOKUP` not set to 0;
otherwise the runtime keeps XLA's lookup (a warning names why, once). On other platforms (GPU, TPU)
`runtime.PackedArray.expand` takes XLA's lookup whatever this module says.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

SOURCE = pathlib.Path(__file__).with_name("cpu_lookup.cc")
TARGET = "gq_jax_lookup"
CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl")
COMPILE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl")


def cpu_flags() -> set[str]:
    """The feature flags of this machine's CPU (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GQ_JAX_CACHE") or pathlib.Path.home() / ".cache" / "gq_jax")


def build(compiler: str) -> pathlib.Path:
    """The compiled kernel, built into `cache_dir()` unless a build of the same source, flags and
    jaxlib is there (written to a temporary name and renamed, so concurrent builds are safe).
    RuntimeError with the compiler's message if it fails."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(COMPILE_FLAGS).encode() + jaxlib.__version__.encode())
    library = cache_dir() / f"cpu_lookup-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as folder:
        partial = pathlib.Path(folder) / library.name
        command = [compiler, *COMPILE_FLAGS, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", str(partial)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, library)
    return library


def unavailable_reason() -> str | None:
    """Why the kernel cannot serve in this process (None when it can)."""
    if os.environ.get("GQ_JAX_CPU_LOOKUP", "1") == "0":
        return "GQ_JAX_CPU_LOOKUP=0"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the CPU is {platform.machine()}, not x86-64"
    missing = [flag for flag in CPU_FLAGS if flag not in cpu_flags()]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return f"no C++ compiler {os.environ.get('CXX', 'g++')!r} on PATH"
    return None


@functools.cache
def available() -> bool:
    """Whether the kernel serves CPU lookups in this process: built and registered on first call;
    False, with one warning naming the cause, where it cannot be."""
    reason = unavailable_reason()
    if reason is None:
        try:
            library = ctypes.cdll.LoadLibrary(str(build(os.environ.get("CXX", "g++"))))
            jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.GqLookup), platform="cpu")
        except (RuntimeError, OSError) as error:
            reason = f"building it failed: {error}"
    if reason is not None:
        if os.environ.get("GQ_JAX_CPU_LOOKUP", "1") != "0":
            warnings.warn(f"gq_jax: the AVX-512 codebook lookup is off ({reason}); resident weights are "
                          f"expanded by XLA's gather or select tree instead", RuntimeWarning, stacklevel=2)
        return False
    return True


MAX_BITS = 5  # wider indices need 2^(b-5) permutes per 16 weights, where XLA's gather costs less


def serves(bits: int, shape: tuple[int, ...], scale_shape: tuple[int, ...]) -> bool:
    """Whether the kernel can expand a `bits`-bit weight of `shape` with scales of `scale_shape`:
    bits <= MAX_BITS, one scale or one per channel of the last axis (the layouts `gq_jax` writes),
    and the kernel `available()`."""
    size = int(np.prod(scale_shape))
    per_tensor = size == 1
    per_last_axis = (len(shape) > 0 and size == shape[-1] and len(scale_shape) <= len(shape)
                     and all(d == 1 for d in scale_shape[:-1]))
    return bits <= MAX_BITS and (per_tensor or per_last_axis) and available()


def lookup(planes: tuple[jax.Array, ...], codebook: jax.Array, scale: jax.Array, bits: int,
           shape: tuple[int, ...]) -> jax.Array:
    """codebook[unpack_planes(planes)] · scale as float32 of `shape`, on the CPU (traceable).

    planes: `runtime.pack_planes`' strided uint8 bit planes of the N = prod(shape) indices;
    codebook [2^bits] float32; scale of one entry or one per channel of the last axis.
    """
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct(shape, jnp.float32))
    return call(codebook.astype(jnp.float32), scale.astype(jnp.float32).reshape(-1), *planes, bits=np.int32(bits))
