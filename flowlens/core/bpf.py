"""BPF read filters (`-f 'tcp port 5432'`, tcpdump's syntax), compiled and run by libpcap itself.

flowlens writes no BPF compiler: `pcap_compile` on a "dead" handle of the frame's link type
turns the expression into a program, and `pcap_offline_filter` runs it on each frame, exactly
as `tcpdump -r X 'filter'` does (pcap-filter(7)). A capture can mix link types (pcapng
interfaces), so the expression is compiled once per link type, when that link type is first
seen. libpcap is loaded with ctypes when a filter is asked for, and only then.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from ..errors import UsageError

__all__ = ["BpfFilter", "check_filter"]

#: pcap_compile's netmask when it is unknown (PCAP_NETMASK_UNKNOWN): only `ip broadcast` needs one
_NETMASK_UNKNOWN = 0xFFFFFFFF
#: snapshot length of the dead handle: the largest frame any program may look at
_SNAPLEN = 262144


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_LIB: Any = None


def _libpcap() -> Any:
    """libpcap through ctypes, loaded once; a UsageError naming the package when it is missing."""
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("pcap")
        if name is None:
            raise UsageError(
                "-f/--filter needs libpcap, which is not installed "
                "(Debian/Ubuntu: apt-get install libpcap0.8; Fedora: dnf install libpcap)"
            )
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]  # fmt: skip
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr),
                                            ctypes.c_char_p]  # fmt: skip
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _LIB = lib
    return _LIB


class BpfFilter:
    """A BPF expression, compiled per link type on first use; `matches` runs it on one frame."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._programs: dict[int, _BpfProgram] = {}
        self._hdr = _PktHdr()
        #: frames the filter turned away
        self.rejected = 0

    def _program(self, linktype: int) -> _BpfProgram:
        lib = _libpcap()
        handle = lib.pcap_open_dead(linktype, _SNAPLEN)
        if not handle:
            raise UsageError(f"-f/--filter: libpcap does not know link type {linktype}")
        try:
            prog = _BpfProgram()
            if (
                lib.pcap_compile(
                    handle, ctypes.byref(prog), self.expression.encode(), 1, _NETMASK_UNKNOWN
                )
                < 0
            ):
                why = (lib.pcap_geterr(handle) or b"cannot compile").decode(errors="replace")
                raise UsageError(f"-f/--filter {self.expression!r}: {why}")
        finally:
            lib.pcap_close(handle)
        return prog

    def matches(self, linktype: int, data: bytes, wirelen: int) -> bool:
        """Does the frame (its captured bytes, and its length on the wire) pass the filter?"""
        prog = self._programs.get(linktype)
        if prog is None:
            prog = self._programs[linktype] = self._program(linktype)
        hdr = self._hdr
        hdr.caplen = len(data)
        hdr.len = max(wirelen, len(data))
        if _LIB.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), data):
            return True
        self.rejected += 1
        return False

    def close(self) -> None:
        for prog in self._programs.values():
            if prog is not None:
                _LIB.pcap_freecode(ctypes.byref(prog))
        self._programs.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: libpcap may be gone
            pass


def check_filter(expression: str, linktype: int = 1) -> None:
    """Raise UsageError now if `expression` does not compile (for Ethernet, by default), so a
    bad filter is reported before any work starts."""
    f = BpfFilter(expression)
    try:
        f._programs[linktype] = f._program(linktype)
    finally:
        f.close()
