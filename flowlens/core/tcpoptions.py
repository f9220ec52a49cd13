"""TCP flags as tcpdump spells them, and TCP options parsed from a packet's option bytes.

Options follow RFC 9293 §3.2 (kinds and lengths), RFC 7323 (window scale, timestamps) and
RFC 2018 (SACK). `Packet.options` (core/decode.py) parses through here, on first use; core.decode
re-exports every name. Compiled with the decoder (RTT reads timestamps per packet).
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct

from flowlens.core import constants as K

from .constants import TH_ACK, TH_CWR, TH_ECE, TH_FIN, TH_PUSH, TH_RST, TH_SYN, TH_URG

__all__ = ["TcpOptions", "EMPTY_OPTIONS", "flags_text", "parse_tcp_options", "tcp_timestamps"]

_U16 = Struct("!H")
_U32 = Struct("!I")

_FLAG_LETTERS = (
    (TH_SYN, "S"),
    (TH_FIN, "F"),
    (TH_RST, "R"),
    (TH_PUSH, "P"),
    (TH_URG, "U"),
    (TH_ECE, "E"),
    (TH_CWR, "W"),
)


def flags_text(flags: int) -> str:
    """tcpdump's flag notation: `S`, `S.`, `.`, `P.`, `F.`, `R.`; `.` is ACK, `none` for 0."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    if flags & TH_ACK:
        text += "."
    return text or "none"


@dataclass(slots=True, frozen=True)
class TcpOptions:
    """The TCP options flowlens uses; None where the option was absent."""

    mss: int | None = None
    #: window scale shift count (RFC 7323 §2), only meaningful on SYN and SYN/ACK
    wscale: int | None = None
    sack_permitted: bool = False
    #: SACK blocks as (left, right) absolute sequence numbers (RFC 2018)
    sack: tuple[tuple[int, int], ...] = ()
    #: RFC 7323 timestamps, raw 32-bit values
    tsval: int | None = None
    tsecr: int | None = None


#: the options of a packet that has none (shared: TcpOptions is frozen)
EMPTY_OPTIONS = TcpOptions()
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_TS_PAIR = Struct("!II")


def tcp_timestamps(raw: bytes) -> tuple[int, int] | None:
    """(TSval, TSecr) from TCP option bytes, or None: the per-packet fast path for RTT.

    Most stacks send NOP, NOP, Timestamps first on every segment after the SYN; that layout is
    read directly, anything else goes through `parse_tcp_options`.
    """
    if raw[:4] == _NOP_NOP_TS and len(raw) >= 12:
        return _TS_PAIR.unpack_from(raw, 4)
    if b"\x08\x0a" not in raw:  # the kind/length pair must appear somewhere
        return None
    opts = parse_tcp_options(raw)
    if opts.tsval is None or opts.tsecr is None:  # (both or neither)
        return None
    return (opts.tsval, opts.tsecr)


def parse_tcp_options(raw: bytes) -> TcpOptions:
    """Parse TCP option bytes; a malformed option ends parsing (what was read is kept)."""
    mss = wscale = tsval = tsecr = None
    sack_permitted = False
    sack: list[tuple[int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == K.TCP_OPT_EOL:
            break
        if kind == K.TCP_OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            break
        body = raw[i + 2 : i + length]
        if kind == K.TCP_OPT_MSS and length == 4:
            mss = _U16.unpack(body)[0]
        elif kind == K.TCP_OPT_WSCALE and length == 3:
            wscale = body[0]
        elif kind == K.TCP_OPT_SACKOK and length == 2:
            sack_permitted = True
        elif kind == K.TCP_OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            for j in range(0, length - 2, 8):
                sack.append((_U32.unpack_from(body, j)[0], _U32.unpack_from(body, j + 4)[0]))
        elif kind == K.TCP_OPT_TIMESTAMP and length == 10:
            tsval, tsecr = _U32.unpack_from(body, 0)[0], _U32.unpack_from(body, 4)[0]
        i += length
    return TcpOptions(mss, wscale, sack_permitted, tuple(sack), tsval, tsecr)
