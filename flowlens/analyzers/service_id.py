"""Name the protocol a connection speaks from the first bytes of each direction.

``identify`` is a pure function: the caller hands over the first payload bytes of each
direction in sequence order (at most ``MAX_BYTES`` each; either side may be empty or cut short)
and gets back Zeek's service names and a few parsed facts, from the rules of service_rules.py
(Zeek's DPD signatures and first-message parsers, each citing its source). The port is never
looked at: a port is a convention, not an identity (``mismatch`` compares the two afterwards).
``ServiceAnalyzer`` gathers those bytes from each connection and writes what ``identify`` says;
``answered`` reads back what the responder's own bytes showed.

    >>> identify(b"SSH-2.0-OpenSSH_9.2p1\\r\\n", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n").service
    'ssh'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.analyzer import Analyzer, Needs
from ..core.constants import seq_add, seq_diff
from ..core.services import expected_service, service_name
from .service_rules import MAX_BYTES, RULES, tls_client_hello, tls_server_hello

__all__ = [
    "MAX_BYTES",
    "RULES",
    "RESPONDER_FACTS",
    "UNKNOWN",
    "ServiceAnalyzer",
    "ServiceState",
    "Identified",
    "answered",
    "identify",
    "mismatch",
    "tls_client_hello",
    "tls_server_hello",
]

#: The service of a connection whose payload matched no rule.
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Identified:
    """What the first bytes say: ``service`` is None (no payload either way), ``"unknown"``, or
    Zeek service names joined by commas; ``app`` holds the parsed facts (flat keys)."""

    service: str | None
    app: dict = field(default_factory=dict)

    @property
    def services(self) -> tuple[str, ...]:
        if self.service is None or self.service == UNKNOWN:
            return ()
        return tuple(self.service.split(","))


def identify(orig: bytes, resp: bytes) -> Identified:
    """Name the protocol from the first bytes the originator sent (``orig``) and the responder
    sent (``resp``), each in sequence order. Longer inputs are cut to ``MAX_BYTES``.

    ``service``: None when neither side carried payload, ``"unknown"`` when no rule matched,
    else Zeek's names of every matching rule joined by commas (RULES order)."""
    orig, resp = bytes(orig[:MAX_BYTES]), bytes(resp[:MAX_BYTES])
    if not orig and not resp:
        return Identified(None, {})
    names, app = [], {}
    for name, rule in RULES:
        facts: dict = {}
        if rule(orig, resp, facts):
            names.append(name)
            app.update(facts)
    # PostgreSQL's SSLRequest is followed by a ClientHello that Zeek's PostgreSQL analyzer
    # consumes itself (src/analyzer/protocol/postgresql/postgresql.spicy): one service, as there.
    return Identified(",".join(names) if names else UNKNOWN, app)


def mismatch(service: str | None, proto: str, resp_port: int) -> bool:
    """True when ``service`` (identify's names) was detected and differs from what ``resp_port``
    is registered to (core.services), e.g. ``ssh`` on 443 or ``http`` on 5432.

    No detection (None, "unknown") and unregistered ports (SSH on 2222) are never a mismatch; a
    port registered to a TLS-wrapped service (465 smtps, 993 imaps) expects ``ssl``."""
    if not service or service == UNKNOWN:
        return False
    expected = expected_service(service_name(proto, resp_port))
    if expected is None:
        return False
    return expected not in service.split(",")


#: The `app` facts parsed from the responder's bytes (the rest come from the originator's).
RESPONDER_FACTS = ("ssh_server", "tls_version", "http_status", "mysql_server_version")
# The rules that match on the originator's bytes alone even when the responder sent other bytes
# (Zeek's dpd.sig enables them from either side), with the fact only the responder's bytes give;
# every other rule, when the responder sent bytes, matched them (each rule's `or not resp` /
# required greeting), so its name says what the responder spoke. NTLMSSP may sit on either side
# and leaves no fact of its own: it says nothing about the responder.
_RESPONDER_SIGN = {"http": "http_status", "ssl": "tls_version", "ntlm": None}


def answered(service: str | None, app: dict | None) -> tuple[str, dict]:
    """What the responder's own bytes showed, for a connection whose responder sent payload
    (a banner, a reply to a scanner's probe): its service names (the connection's `service`
    without those only the originator's bytes named) or ``"unknown"``, and the `app` facts
    parsed from the responder's bytes, with ``software`` for SSH (the softwareversion of
    RFC 4253 §4.2's "SSH-protoversion-softwareversion SP comments"). Read from the names and
    facts `ServiceAnalyzer` wrote; nothing is identified again."""
    app = app or {}
    names = [
        name
        for name in (service.split(",") if service else ())
        if name not in _RESPONDER_SIGN or _RESPONDER_SIGN[name] in app
    ]
    facts = {key: app[key] for key in RESPONDER_FACTS if key in app}
    if "ssh_server" in facts:
        parts = str(facts["ssh_server"]).split(" ", 1)[0].split("-", 2)
        if len(parts) == 3:
            facts["software"] = parts[2]
    return (",".join(names) if names else UNKNOWN), facts


# ---------------------------------------------------------------------------- the analyzer
_TCP, _UDP = 6, 17
_SYN = 0x02
#: segments beyond a hole kept per direction while waiting for the hole to fill
_MAX_PENDING = 8


class ServiceState:
    """One connection's first payload bytes, each direction ([orig, resp]), in sequence order."""

    __slots__ = ("data", "next_seq", "frames", "closed", "pending")

    def __init__(self) -> None:
        self.data = [b"", b""]
        #: the next sequence number expected each way (TCP; None until a SYN or data says)
        self.next_seq: list[int | None] = [None, None]
        #: frame of each direction's first data (None before)
        self.frames: list[int | None] = [None, None]
        #: no more bytes are taken that way (full, cut short, a gap, or the peer took its turn)
        self.closed = [False, False]
        #: TCP segments beyond a hole, waiting for it to fill: [(seq, bytes, cut)] each way
        self.pending: list[list] = [[], []]


class ServiceAnalyzer(Analyzer):
    """Names each TCP connection's and UDP flow's protocol from its first payload bytes
    (issue 20), writing `conn.service`, `conn.app` and `conn.service_frames` as it decides.

    Per direction it keeps at most `MAX_BYTES` of the first data in sequence order: for TCP the
    bytes from the initial sequence number (the SYN's, else the first data segment's) put in
    sequence order, retransmitted bytes taken once, a few segments beyond a hole held until it
    fills (the direction stops when it does not); for UDP the first datagram each way. A direction stops taking bytes when it is full, when the snaplen cut a
    segment, or when the other side has sent data after it (the first message is over: the
    request before its response). Once both directions have stopped, `identify` runs and the
    analyzer lets go of the connection (its state becomes None: no more calls for its packets);
    otherwise it runs at the connection's end (`on_end`). Memory: two buffers of at most
    `MAX_BYTES` per open connection, nothing per finished one but the parsed fields.
    """

    needs = Needs.PAYLOAD

    def on_start(self, conn, pkt):
        if conn.proto != _TCP and conn.proto != _UDP or pkt.tunnel is not None:
            return None
        return ServiceState()

    def on_packet(self, conn, pkt, from_orig) -> None:
        if pkt.tunnel is not None:
            # The decoder confirmed a tunnel in this flow (the outer UDP of VXLAN, Geneve,
            # GTPv1, Teredo, AYIYA): the connection table names its service after the tunnel
            # (Zeek's AnalyzerConfirmation; ConnectionTable._add_layer), so this analyzer
            # lets the flow go without deciding, and `app` says nothing of the carried bytes.
            conn.states[self.slot] = None
            return
        st = self.state_of(conn)
        side = 0 if from_orig else 1
        if conn.proto == _TCP and pkt.flags & _SYN:
            st.next_seq[side] = seq_add(pkt.seq, 1)  # RFC 9293 §3.4: data starts at ISN+1
            return
        payload = pkt.payload
        if payload is None:
            return
        other = 1 - side
        if st.frames[other] is not None:
            # the peer spoke first; its first message is over (also when this side stopped
            # taking bytes already: an FTP server's reply to USER ends the client's command)
            st.closed[other] = True
        if st.closed[side]:
            pass
        elif conn.proto == _UDP:
            st.data[side] = payload[:MAX_BYTES]
            st.frames[side] = pkt.frame
            st.closed[side] = True
        else:
            if st.next_seq[side] is None:  # no SYN seen (midstream): the first data starts it
                st.next_seq[side] = pkt.seq
            if self._take(st, side, pkt.seq, payload, len(payload) < pkt.plen):
                if st.frames[side] is None:
                    st.frames[side] = pkt.frame
        if st.closed[0] and st.closed[1]:
            self._decide(conn, st)
            conn.states[self.slot] = None  # decided: no more calls for this connection

    @staticmethod
    def _take(st: ServiceState, side: int, seq: int, payload: bytes, cut: bool) -> bool:
        """Add a TCP segment's bytes to `side`'s buffer in sequence order; True when it added
        some. A segment beyond a hole waits (at most `_MAX_PENDING` of them, within the first
        `MAX_BYTES` of the stream) for the hole to fill, as a reassembler would; a
        retransmission adds only the bytes not yet seen."""
        pending = st.pending[side]
        offset = seq_diff(seq, st.next_seq[side])  # type: ignore[arg-type]
        if offset > 0:
            if len(st.data[side]) + offset >= MAX_BYTES:
                st.closed[side] = True  # the hole reaches past the buffer: nothing more to add
            elif len(pending) >= _MAX_PENDING:
                st.closed[side] = True
            else:
                pending.append((seq, payload, cut))
            return False
        added = False
        while True:
            if len(payload) + offset > 0:  # new bytes (a retransmission may add none)
                buf = st.data[side] + (payload[-offset:] if offset else payload)
                st.data[side] = buf[:MAX_BYTES]
                st.next_seq[side] = seq_add(seq, len(payload))
                added = True
                if len(buf) >= MAX_BYTES or cut:
                    st.closed[side] = True  # full, or the snaplen cut it: no contiguous rest
                    pending.clear()
                    return added
            # a waiting segment that now starts at or before the next byte goes next
            ready = [
                i
                for i, waiting in enumerate(pending)
                if seq_diff(waiting[0], st.next_seq[side]) <= 0  # type: ignore[arg-type]
            ]
            if not ready:
                return added
            seq, payload, cut = pending.pop(ready[0])
            offset = seq_diff(seq, st.next_seq[side])  # type: ignore[arg-type]

    def on_flip(self, conn) -> None:
        st = self.state_of(conn)
        for name in ("data", "next_seq", "frames", "closed", "pending"):
            v = getattr(st, name)
            v[0], v[1] = v[1], v[0]

    def on_end(self, conn) -> None:
        st = self.state_of(conn)
        if st is not None:
            self._decide(conn, st)

    def _decide(self, conn, st: ServiceState) -> None:
        found = identify(st.data[0], st.data[1])
        if found.service is None:
            return  # no payload: service and app stay None
        if found.service == UNKNOWN:
            conn.app = {"unidentified": True}  # Zeek leaves `service` unset here
        else:
            conn.service = found.service
            conn.app = dict(found.app)
        conn.service_frames = tuple(f for f in st.frames if f is not None)
