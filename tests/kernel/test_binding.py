"""The cffi layouts against the reference, the header against abi.py, and the
backend selection.

The LP64 numbers are the "LP64" column of the DVK ABI reference (sections 1
and 4.17); they were computed there, not observed on a 64-bit DVK.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from dvsd.kernel import (
    KernelError,
    KernelUnavailable,
    NotSupportedByKernel,
    abi,
    open_kernel,
)
from dvsd.kernel.cffi_backend import (
    DvkKernel,
    get_ffi,
    header_path,
    parse_proxies_info,
)
from dvsd.kernel.emulated import EmulatedKernel

LP64 = struct.calcsize("L") == 8
lp64_only = pytest.mark.skipif(not LP64, reason="the reference's LP64 column")

SIZES = {
    "dvs_usr_t": 80,
    "dc_usr_t": 192,
    "node_usr_t": 96,
    "proc_usr_t": 256,
    "proxies_usr_t": 40,
    "priv_usr_t": 72,
    "struct dvk_parm_dvsinit": 16,
    "struct dvk_parm_getdcinfo": 16,
    "struct dvk_parm_getnodeinfo": 16,
    "struct dvk_parm_dcnode": 8,
    "struct dvk_parm_pxconn": 8,
    "struct dvk_parm_priv": 16,
    "struct dvk_parm_nodeup": 16,
    "struct dvk_parm_proxyinfo": 24,
    "struct dvk_parm_bind": 20,
    "struct dvk_parm_pxbind": 24,
    "struct dvk_parm_procinfo": 16,
}

OFFSETS = {
    "dvs_usr_t": {
        "d_name": 0,
        "d_nr_dcs": 16,
        "d_nr_nodes": 20,
        "d_nr_procs": 24,
        "d_nr_tasks": 28,
        "d_nr_sysprocs": 32,
        "d_max_copybuf": 36,
        "d_max_copylen": 40,
        "d_dbglvl": 48,
        "d_version": 56,
        "d_flags": 64,
        "d_size_proc": 72,
    },
    "dc_usr_t": {
        "dc_dcid": 0,
        "dc_flags": 4,
        "dc_nr_procs": 8,
        "dc_nr_tasks": 12,
        "dc_nr_sysprocs": 16,
        "dc_nr_nodes": 20,
        "dc_nodes": 24,
        "dc_warn2proc": 32,
        "dc_warnmsg": 36,
        "dc_pid": 40,
        "dc_name": 44,
        "dc_cpumask": 64,
    },
    "node_usr_t": {
        "n_nodeid": 0,
        "n_flags": 8,
        "n_proxies": 16,
        "n_dcs": 24,
        "n_stimestamp": 32,
        "n_rtimestamp": 48,
        "n_pxsent": 64,
        "n_pxrcvd": 72,
        "n_name": 80,
    },
    "proc_usr_t": {
        "p_nr": 0,
        "p_endpoint": 4,
        "p_dcid": 8,
        "p_rts_flags": 16,
        "p_lpid": 24,
        "p_vpid": 28,
        "p_nodeid": 32,
        "p_nodemap": 40,
        "p_misc_flags": 48,
        "p_getfrom": 56,
        "p_sendto": 60,
        "p_waitmigr": 64,
        "p_waitunbind": 68,
        "p_proxy": 72,
        "p_lclsent": 80,
        "p_rmtsent": 88,
        "p_lclcopy": 96,
        "p_rmtcopy": 104,
        "p_name": 112,
        "p_cpumask": 128,
    },
    "proxies_usr_t": {
        "px_id": 0,
        "px_flags": 8,
        "px_maxbytes": 16,
        "px_maxbcmds": 20,
        "px_name": 24,
    },
    "priv_usr_t": {
        "priv_id": 0,
        "priv_warn": 4,
        "priv_level": 8,
        "priv_trap_mask": 12,
        "priv_ipc_from": 14,
        "priv_ipc_to": 22,
        "priv_dvk_allowed": 30,
        "priv_alarm_timer": 40,
    },
    "struct dvk_parm_nodeup": {"name": 0, "nodeid": 8, "pxid": 12},
    "struct dvk_parm_proxyinfo": {"pxid": 0, "spx": 8, "rpx": 16},
    "struct dvk_parm_pxbind": {
        "name": 0,
        "pxid": 8,
        "spid": 12,
        "rpid": 16,
        "maxbuf": 20,
    },
    "struct dvk_parm_priv": {"dcid": 0, "ep": 4, "priv": 8},
    "struct dvk_parm_procinfo": {"dcid": 0, "nr": 4, "proc": 8},
    "struct dvk_parm_bind": {"cmd": 0, "dcid": 4, "pid": 8, "ep": 12, "nodeid": 16},
}


@lp64_only
@pytest.mark.parametrize(("ctype", "size"), sorted(SIZES.items()))
def test_sizeof_matches_the_reference(ctype, size):
    assert get_ffi().sizeof(ctype) == size


@lp64_only
@pytest.mark.parametrize(
    ("ctype", "member", "offset"),
    [(ct, m, o) for ct, members in OFFSETS.items() for m, o in members.items()],
)
def test_offsetof_matches_the_reference(ctype, member, offset):
    assert get_ffi().offsetof(ctype, member) == offset


def test_cpu_mask_is_the_user_space_128_bytes():
    ffi = get_ffi()
    assert ffi.sizeof("cpu_set_t") == 128
    assert ffi.alignof("cpu_set_t") == struct.calcsize("L")


def test_gcc_agrees_with_cffi(tmp_path):
    """The header compiled by C gives the same layout cffi computed."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    lines = [
        '#include "dvs_api.h"',
        "#include <stdio.h>",
        "#include <stddef.h>",
        "int main(void) {",
    ]
    expected = []
    ffi = get_ffi()
    for ctype, members in OFFSETS.items():
        lines.append(f'printf("%zu\\n", sizeof({ctype}));')
        expected.append(ffi.sizeof(ctype))
        for member in members:
            lines.append(f'printf("%zu\\n", offsetof({ctype}, {member}));')
            expected.append(ffi.offsetof(ctype, member))
    lines += ["return 0;", "}"]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    binary = tmp_path / "layout"
    subprocess.run(
        [
            compiler,
            "-Wall",
            "-Werror",
            f"-I{header_path().parent}",
            "-o",
            str(binary),
            str(source),
        ],
        check=True,
    )
    printed = subprocess.run([str(binary)], check=True, capture_output=True, text=True)
    assert [int(line) for line in printed.stdout.split()] == expected


def header_defines() -> dict[str, int]:
    defines = {}
    pattern = re.compile(
        r"^#define\s+(\w+)\s+\(?(-?(?:0x[0-9A-Fa-f]+|\d+))\)?\s*(/\*.*)?$"
    )
    for line in header_path().read_text().splitlines():
        match = pattern.match(line)
        if match:
            defines[match[1]] = int(match[2], 0)
    return defines


def test_header_error_codes_match_abi():
    defines = header_defines()
    codes = {name: value for name, value in defines.items() if name.startswith("EDVS")}
    assert len(codes) > 25
    for name, value in codes.items():
        assert abi.error_name(value) == name


def test_header_ioctl_numbers_match_abi():
    defines = header_defines()
    requests = {n: v for n, v in defines.items() if n.startswith("DVK_IOC_")}
    requests.pop("DVK_IOC_MAGIC")
    assert len(requests) == 21
    for name, value in requests.items():
        assert abi.ioctl_request(abi.DvkCall[name.removeprefix("DVK_IOC_")]) == value


@pytest.mark.parametrize(
    "name",
    [
        "NR_DCS",
        "NR_NODES",
        "NR_TASKS",
        "NR_PROCS",
        "NR_SYS_PROCS",
        "MAXCOPYBUF",
        "MAXCOPYLEN",
        "DVS_VERSION",
    ],
)
def test_header_limits_match_abi(name):
    assert header_defines()[name] == getattr(abi, name)


def test_reference_ioctl_table_samples():
    assert abi.ioctl_request(abi.DvkCall.DCINIT) == 0x4004E301
    assert abi.ioctl_request(abi.DvkCall.DVSEND) == 0x0000E319
    assert abi.ioctl_request(abi.DvkCall.GETPROXYINFO) == 0x8004E321


def test_endpoint_arithmetic():
    assert abi.GENERATION_SIZE == 35570
    endpoint = abi.make_endpoint(3, -2)
    assert (abi.endpoint_slot(endpoint), abi.endpoint_generation(endpoint)) == (-2, 3)
    assert abi.endpoint_slot(7) == 7


def test_error_sentences():
    assert abi.describe_error(-302) == "EDVSBADDCID (-302): bad DC id"
    assert abi.describe_error(-7).startswith("EDVS2BIG (-7)")
    assert abi.describe_error(-999) == "EDVS(-999) (-999): unknown kernel error"
    error = KernelError(-318, "dc_init dcid=1")
    assert error.rcode == -318
    assert error.message == "EDVSDVSINIT (-318): DVS not initialised (dc_init dcid=1)"


PROXIES_TEXT = (
    "Proxies Flags Sender Receiver --Proxies_Name- 10987654321098765432109876543210 \n"
    "      1     7   4242     4243           node1 ------------------------------X-\n"
    "     12     1    100      101        lonely12 --------------------------------\n"
)


def test_parse_proxies_info():
    pairs = parse_proxies_info(PROXIES_TEXT)
    assert sorted(pairs) == [1, 12]
    one = pairs[1]
    assert (one.flags, one.sender_pid, one.receiver_pid, one.name) == (
        7,
        4242,
        4243,
        "node1",
    )
    assert one.nodes == (1,)
    assert one.max_bytes is None
    assert pairs[12].nodes == ()


def test_parse_proxies_info_refuses_a_strange_line():
    with pytest.raises(NotSupportedByKernel) as caught:
        parse_proxies_info(PROXIES_TEXT + "garbage\n")
    assert "line 4" in caught.value.message


def test_proxy_status_without_the_proc_file_is_not_supported(fake_dvk):
    from tests.kernel.conftest import make_fake_kernel

    kernel = make_fake_kernel(fake_dvk)

    def missing() -> str:
        raise FileNotFoundError(2, "No such file or directory")

    kernel._proxies_info = missing
    kernel.dvs_init(0)
    with pytest.raises(NotSupportedByKernel) as caught:
        kernel.get_proxy_status(0)
    assert caught.value.rcode == -1010
    assert "/proc/dvs/proxies/info" in caught.value.message


def test_dvk_backend_refuses_remote_bind(fake_dvk):
    from tests.kernel.conftest import make_fake_kernel

    kernel = make_fake_kernel(fake_dvk)
    with pytest.raises(NotSupportedByKernel):
        kernel.bind(0, 5, 0, nodeid=1)


def test_proposed_getproxysts_ioctl_is_refused_like_a_shipped_module(fake_dvk):
    ffi = get_ffi()
    fake_dvk.fake_dvk_reset()
    block = ffi.new("struct dvk_parm_getproxysts *")
    result = fake_dvk.fake_dvk_ioctl(
        -1, abi.ioctl_request(abi.DvkCall.GETPROXYSTS), ffi.cast("void *", block)
    )
    assert (result, ffi.errno) == (-1, 25)  # ENOTTY: number above DVK_IOC_MAXNR


# -- backend selection -------------------------------------------------------


def test_auto_without_device_is_emulated(tmp_path):
    kernel = open_kernel("auto", device=str(tmp_path / "dvk"))
    assert isinstance(kernel, EmulatedKernel)
    assert kernel.backend_name == "emulated"


def test_dvk_without_device_fails_loudly(tmp_path):
    with pytest.raises(KernelUnavailable) as caught:
        open_kernel("dvk", device=str(tmp_path / "dvk"))
    assert "cannot open the DVK device" in str(caught.value)


def test_unknown_backend_name():
    with pytest.raises(KernelUnavailable) as caught:
        open_kernel("fast")
    assert "auto, emulated, dvk" in str(caught.value)


def test_real_ioctl_on_a_device_that_is_not_the_dvk():
    """libc ioctl through cffi: /dev/null answers ENOTTY, mapped to EDVSNOTTY."""
    kernel = open_kernel("auto", device="/dev/null")
    assert isinstance(kernel, DvkKernel)
    assert kernel.backend_name == "dvk"
    try:
        with pytest.raises(KernelError) as caught:
            kernel.get_dvs_info()
        assert caught.value.rcode == abi.Edvs.NOTTY
        assert caught.value.message.startswith("EDVSNOTTY (-25)")
    finally:
        kernel.close()


def test_attach_node_differs_only_in_who_binds_the_pair(fake_dvk):
    """Emulated: attach binds the pair itself; dvk: the proxy programs must have."""
    from tests.kernel.conftest import make_fake_kernel

    emulated = EmulatedKernel()
    emulated.dvs_init(0)
    assert emulated.attach_node(1, "host1").up
    dvk = make_fake_kernel(fake_dvk)
    dvk.dvs_init(0)
    with pytest.raises(KernelError) as caught:
        dvk.attach_node(1, "host1")
    assert caught.value.rcode == abi.Edvs.PROXYFREE
