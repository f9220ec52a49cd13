"""IP fragment reassembly for the decoder, lengths only (flowlens never keeps payload).

`FragmentDecoder` sits between `TunnelDecoder` and `Decoder` in the decoder's class chain
(core/decode.py): IPv4 (RFC 791) and IPv6 fragment headers (RFC 8200 §4.5) hand their
fragments here, keyed by (version, source, destination, identification, protocol), and the
datagram comes back as one packet once every byte has arrived. At most
MAX_PENDING_DATAGRAMS datagrams wait at once (a bound against fragment floods).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cython

from flowlens.core import constants as K  # (absolute: fragments.pxd cimports it under this name)

from .packet import PacketFields
from .tunnels import TunnelDecoder

__all__ = ["FragmentDecoder", "MAX_PENDING_DATAGRAMS"]

#: datagrams reassembled at once at most; the oldest is dropped (and counted) beyond it
MAX_PENDING_DATAGRAMS = 4096


@cython.cclass
class FragmentDecoder(TunnelDecoder):
    """The decoder's IP reassembly (see the module docstring); `Decoder` adds IP and transport."""

    if TYPE_CHECKING:  # the attributes' types for mypy (fragments.pxd gives the C ones)
        _frags: dict[tuple, list]

    def __init__(self, max_depth: int = K.TUNNEL_MAX_DEPTH) -> None:
        super().__init__(max_depth)
        # datagrams being reassembled: key -> [first packet, bytes seen, total, header bytes]
        self._frags = {}

    # ---------------------------------------------------------------- what Decoder provides
    @cython.cfunc
    def _transport(
        self,
        p: PacketFields,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        cap_end: cython.Py_ssize_t,
        seg_len: cython.Py_ssize_t,
        pseudo: cython.longlong,
    ):
        """The transport header at d[pos:cap_end] into `p` (Decoder overrides it)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- fragments
    @cython.cfunc
    def _fragment(
        self,
        key,
        p: PacketFields,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        cap_end: cython.Py_ssize_t,
        offset: cython.Py_ssize_t,
        more: cython.uint,
        frag_len: cython.Py_ssize_t,
        ip_hdr_len: cython.Py_ssize_t,
    ):
        """Account one IP fragment; returns the whole datagram's packet when it is complete.

        Only lengths are reassembled (flowlens never keeps payload): the first fragment gives
        the transport header, the last one the total length, and the datagram is emitted, as
        one packet with the completing fragment's time and frame, once every byte has arrived.
        """
        frags = self._frags
        st = frags.get(key)
        if st is None:
            if len(frags) >= MAX_PENDING_DATAGRAMS:  # bound memory against fragment floods
                frags.pop(next(iter(frags)))
                self.skipped["IP fragments of a datagram that never completed"] += 1
            st = frags[key] = [None, 0, None, 0]  # [first packet, bytes seen, total, header]
        st[1] += frag_len
        if not more:
            st[2] = offset + frag_len
        if offset == 0:
            p.fragment = 1
            first = self._transport(p, d, pos, cap_end, frag_len, -1)
            if first is None:
                del frags[key]
                return None
            st[0] = first
            st[3] = frag_len - first.plen  # transport header bytes
        first, seen, total, hdr = st
        if first is None or total is None or seen < total:
            return None
        del frags[key]
        if total < hdr:  # the last fragment ends inside the first one's transport header
            return self._skip("IP fragments whose lengths do not add up")
        first.plen = total - hdr
        first.ip_len = ip_hdr_len + total
        first.frame, first.ts_ns = p.frame, p.ts_ns
        # inside a tunnel: the datagram comes out of the completing fragment's outer packet
        # (the first fragment's was analysed with its own frame)
        first.encap = p.encap
        first.caplen_short = 0
        return first

    @property
    def pending_fragments(self) -> int:
        """Datagrams still waiting for fragments (reported when a capture ends)."""
        return len(self._frags)
