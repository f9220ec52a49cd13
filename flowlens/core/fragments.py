"""IP fragment reassembly for the decoder: lengths, and a UDP datagram's first bytes for tunnels.

`FragmentDecoder` sits between `TunnelDecoder` and `Decoder` in the decoder's class chain
(core/decode.py): IPv4 (RFC 791 §3.2) and IPv6 fragment headers (RFC 8200 §4.5) hand their
fragments here, keyed by (version, source, destination, identification, protocol), and the
datagram comes back as one packet once every byte has arrived. At most
MAX_PENDING_DATAGRAMS datagrams wait at once (a bound against fragment floods).

flowlens keeps no payload, but Zeek reassembles the outer datagram (src/Frag.cc
FragReassembler, called from packet_analysis/protocol/ip/IP.cc) and hands the whole UDP
payload to the tunnel analyzers (GTPv1, VXLAN, ...). So for UDP the first HEAD_BYTES bytes of
the datagram (the UDP header, the tunnel header, the inner IP and TCP/UDP headers) are kept
while it is reassembled, and a complete datagram is offered to the UDP tunnels from them
(`Decoder._reassembled_udp`); the inner packet's lengths come from its own IP header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cython

from flowlens.core import constants as K  # (absolute: fragments.pxd cimports it under this name)

from .packet import PacketFields
from .tunnels import TunnelDecoder

__all__ = ["FragmentDecoder", "HEAD_BYTES", "MAX_PENDING_DATAGRAMS"]

#: datagrams reassembled at once at most; the oldest is dropped (and counted) beyond it
MAX_PENDING_DATAGRAMS = 4096
#: bytes kept of a fragmented UDP datagram's start (UDP header included), for its tunnel
#: headers and the inner packet's IP and TCP/UDP headers: under 4 MB for all pending ones
HEAD_BYTES = 512


@cython.cclass
class FragmentDecoder(TunnelDecoder):
    """The decoder's IP reassembly (see the module docstring); `Decoder` adds IP and transport."""

    if TYPE_CHECKING:  # the attributes' types for mypy (fragments.pxd gives the C ones)
        _frags: dict[tuple, list]

    def __init__(self, max_depth: int = K.TUNNEL_MAX_DEPTH) -> None:
        super().__init__(max_depth)
        # datagrams being reassembled: key -> [first packet, bytes seen, total, header bytes,
        # UDP only: the (offset, bytes) pieces of the first HEAD_BYTES bytes, in arrival order,
        # and their bytes together]
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

    @cython.cfunc
    def _reassembled_udp(
        self, p: PacketFields, head: bytes, whole: cython.Py_ssize_t
    ):  # fmt: skip
        """The reassembled UDP datagram `p`, whose first bytes are `head` (UDP header first)
        and whose length is `whole`, offered to the UDP tunnels: the inner packet, or `p`
        (Decoder overrides it)."""
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

        Lengths are reassembled (flowlens keeps no payload): the first fragment gives the
        transport header, the last one the total length, and the datagram is emitted, as one
        packet with the completing fragment's time and frame, once every byte has arrived. Of a
        UDP datagram the first HEAD_BYTES bytes are kept too, and a complete one is offered to
        the UDP tunnels (see the module docstring); the outer datagram is still its own packet
        (the inner one's `encap`).
        """
        frags = self._frags
        st = frags.get(key)
        if st is None:
            if len(frags) >= MAX_PENDING_DATAGRAMS:  # bound memory against fragment floods
                frags.pop(next(iter(frags)))
                self.skipped["IP fragments of a datagram that never completed"] += 1
            st = frags[key] = [None, 0, None, 0, None, 0]
        st[1] += frag_len
        if not more:
            st[2] = offset + frag_len
        if (
            p.proto == K.IPPROTO_UDP
            and offset < HEAD_BYTES
            and cap_end > pos
            and st[5] < HEAD_BYTES
        ):
            # a copy of at most HEAD_BYTES - offset bytes (RFC 791 §3.2, RFC 8200 §4.5: offsets
            # count 8-byte units from the start of the datagram's payload, the UDP header);
            # once HEAD_BYTES are kept, repeated fragments add none (under 2 * HEAD_BYTES each)
            piece = bytes(d[pos : min(cap_end, pos + HEAD_BYTES - offset)])
            st[5] += len(piece)
            if st[4] is None:
                st[4] = [(offset, piece)]
            else:
                st[4].append((offset, piece))
        if offset == 0:
            p.fragment = 1
            first = self._transport(p, d, pos, cap_end, frag_len, -1)
            if first is None:
                del frags[key]
                return None
            st[0] = first
            st[3] = frag_len - first.plen  # transport header bytes
        first, seen, total, hdr, pieces, _kept = st
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
        if pieces is not None and first.proto == K.IPPROTO_UDP:
            head = _head(pieces, min(total, HEAD_BYTES))
            if len(head) > 8:
                return self._reassembled_udp(first, head, total)
        return first

    @property
    def pending_fragments(self) -> int:
        """Datagrams still waiting for fragments (reported when a capture ends)."""
        return len(self._frags)


def _head(pieces: list, size: cython.Py_ssize_t) -> bytes:
    """The datagram's first bytes, as far as the `pieces` ((offset, bytes), in arrival order)
    cover them without a gap, at most `size`. Where pieces overlap the earlier one's bytes
    stand, as in Zeek's reassembler (Reassem.cc DataBlockList::Insert keeps the old block and
    inserts only the new data around it)."""
    buf = bytearray(size)
    for start, piece in reversed(pieces):  # the earliest written last: its bytes stand
        buf[start : start + len(piece)] = piece[: max(0, size - start)]
    reach = 0
    for start, piece in sorted(pieces, key=lambda sp: sp[0]):
        if start > reach:
            break  # a gap: the bytes beyond it are not known
        reach = max(reach, start + len(piece))
    return bytes(buf[: min(reach, size)])
