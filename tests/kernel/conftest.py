"""Kernel fixtures: the two backends behind one ``kernel`` fixture.

``kernel`` runs a test against the emulated DVK and against the cffi binding
over the C test double of /dev/dvk (native/fake_dvk.c, compiled once per
session with gcc).  The double is reset to "module just loaded" before each
test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dvsd.kernel.cffi_backend import DvkKernel, IoctlChannel, get_ffi
from dvsd.kernel.emulated import EmulatedKernel

NATIVE = Path(__file__).resolve().parents[2] / "native"


@pytest.fixture(scope="session")
def fake_dvk_library(tmp_path_factory) -> Path:
    """native/fake_dvk.c built as a shared library."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) to build the /dev/dvk test double")
    target = tmp_path_factory.mktemp("fake_dvk") / "libfake_dvk.so"
    subprocess.run(
        [
            compiler,
            "-Wall",
            "-Werror",
            "-shared",
            "-fPIC",
            "-O1",
            f"-I{NATIVE}",
            "-o",
            str(target),
            str(NATIVE / "fake_dvk.c"),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="session")
def fake_dvk(fake_dvk_library):
    """The loaded test double (cffi library object)."""
    return get_ffi().dlopen(str(fake_dvk_library))


def make_fake_kernel(library) -> DvkKernel:
    ffi = get_ffi()
    library.fake_dvk_reset()

    def proxies_info() -> str:
        buffer = ffi.new("char[]", 65536)
        length = library.fake_dvk_proxies_info(buffer, 65536)
        return ffi.string(buffer, length).decode()

    channel = IoctlChannel(ffi, -1, library.fake_dvk_ioctl)
    return DvkKernel(channel, ffi=ffi, proxies_info=proxies_info)


@pytest.fixture(params=["emulated", "dvk"])
def kernel(request):
    """Each backend in turn: EmulatedKernel, then DvkKernel over the double."""
    if request.param == "emulated":
        backend = EmulatedKernel()
    else:
        backend = make_fake_kernel(request.getfixturevalue("fake_dvk"))
    yield backend
    backend.close()
