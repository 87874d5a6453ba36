"""The cffi API-mode definition of ``mind4_metal._native``.

Three ways to use it, all standard cffi:

- ``python -m cffi.gen_src exec-python build_ffi.py _native.c`` (cffi >= 2.1):
  CMake (through scikit-build-core) runs this to generate the C source, then
  compiles it against the static ``metal_native`` library.
- ``python build_ffi.py _native.c``: the same through ``FFI.emit_c_code`` for
  cffi < 2.1 (CMake falls back to it).
- ``python build_ffi.py --inplace``: a development build without pip: CMake
  builds ``metal_native`` and cffi compiles the module into ``build-dev/lib``,
  which ``mind4_metal/__init__.py`` adds to the package path.

The cdef is the public header ``metal_native/include/mind4.h`` with its
preprocessor lines removed, so the binding cannot drift from the C API.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def native_dir() -> Path:
    """metal_native/: beside this file (an sdist) or two levels up (the repository)."""
    env = os.environ.get("MIND4_NATIVE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [HERE / "metal_native", HERE.parent.parent / "metal_native"]
    for c in candidates:
        if (c / "include" / "mind4.h").is_file():
            return c.resolve()
    raise FileNotFoundError(
        "cannot find metal_native/include/mind4.h; set MIND4_NATIVE_DIR to the metal_native directory"
    )


def cdef_from_header(text: str) -> str:
    """mind4.h without preprocessor lines and the C++ guard; integer #defines kept."""
    out, skip = [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#ifdef __cplusplus"):
            skip = 1
            continue
        if skip:
            if stripped.startswith("#endif"):
                skip = 0
            continue
        if re.match(r"#define\s+\w+\s+\d+\s*$", stripped):
            out.append(stripped)
            continue
        if stripped.startswith("#"):
            continue
        out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
_native = native_dir()
ffibuilder.cdef(cdef_from_header((_native / "include" / "mind4.h").read_text(encoding="utf-8")))
ffibuilder.set_source(
    "mind4_metal._native",
    '#include "mind4.h"\n',
    include_dirs=[str(_native / "include")],
)


def build_inplace() -> Path:
    """Build metal_native with CMake, then compile the module into build-dev/lib."""
    import shutil
    import subprocess
    import sysconfig

    build = HERE / "build-dev"
    subprocess.run(
        [
            "cmake",
            "-S",
            str(_native),
            "-B",
            str(build / "native"),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DMIND4_BUILD_TESTS=OFF",
            "-DMIND4_BUILD_BENCHMARKS=OFF",
        ],
        check=True,
    )
    subprocess.run(["cmake", "--build", str(build / "native"), "--parallel"], check=True)
    libs = list((build / "native").rglob("*mind4_native.a")) + list(
        (build / "native").rglob("mind4_native.lib")
    )
    if not libs:
        raise FileNotFoundError(f"the metal_native static library was not built under {build}")
    builder = FFI()
    builder.cdef(cdef_from_header((_native / "include" / "mind4.h").read_text(encoding="utf-8")))
    builder.set_source(
        "mind4_metal._native",
        '#include "mind4.h"\n',
        include_dirs=[str(_native / "include")],
        extra_objects=[str(libs[0])],
        libraries=[] if os.name == "nt" else ["m"],
        extra_link_args=[] if os.name == "nt" else ["-pthread"],
    )
    built = Path(builder.compile(tmpdir=str(build / "cffi")))
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or built.suffix
    # kept out of the package directory so a wheel never picks it up;
    # mind4_metal/__init__.py adds this directory to the package path
    target = build / "lib" / f"_native{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--inplace":
        print(build_inplace())
    elif len(sys.argv) == 2:
        ffibuilder.emit_c_code(sys.argv[1])
    else:
        sys.exit("usage: python build_ffi.py OUTPUT.c | --inplace")
