"""The connection record that `flowlens flows` prints, documented field by field.

`Connection.to_record()` builds the record as a dict on the hot path (one per connection, with
Zeek's dotted field names as keys); `ConnectionRecord` is the same record as a frozen, typed
object for scripts (`ConnectionRecord.from_dict(conn.to_record())`, or `Analysis.records()`).
Field names follow Zeek's conn.log (scripts/base/protocols/conn/main.zeek) where Zeek has the
concept; flowlens's own fields come after them. Each field's docstring below says what it
means, its unit and its caveats; docs/fields.md is written from them
(`python scripts/make_field_reference.py`) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["ConnectionRecord", "record_fields"]


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One TCP connection or UDP/ICMP flow, as `flowlens flows` prints it. A field whose
    printed name differs from its attribute (Zeek's dotted `id.*` names) says so in its
    metadata."""

    uid: str
    """Stable id of the connection within the capture: "C" and 17 base-62 characters, a hash of
    its first packet (time, frame number, 5-tuple). The same capture always gives the same uids;
    they are not Zeek's uids."""

    ts: float
    """Time of the connection's first packet, epoch seconds, to the microsecond (UTC)."""

    duration: float
    """Zeek's duration: seconds from the first packet to Zeek's last_time, to the microsecond;
    0 for a single packet. For TCP, last_time stops once both sides' closes were seen (Zeek's
    TCPSessionAdapter::Process), so the ACK of the last FIN is not in it (the API's
    `Connection.duration_s` runs to the last packet). Never negative (a clock that jumps back
    gives 0)."""

    proto: str
    """Transport protocol: `tcp`, `udp` or `icmp` (ICMPv6 too), else the IP protocol number."""

    id_orig_h: str = field(metadata={"name": "id.orig_h"})
    """Originator's address (who opened the connection: the sender of the first SYN; for UDP
    the first sender unless Zeek's port rule says it was a reply). See `originator_inferred`."""

    id_orig_p: int = field(metadata={"name": "id.orig_p"})
    """Originator's port; for ICMP the message type (as Zeek logs it)."""

    id_resp_h: str = field(metadata={"name": "id.resp_h"})
    """Responder's address."""

    id_resp_p: int = field(metadata={"name": "id.resp_p"})
    """Responder's port; for ICMP the code, or the reply's type for request/reply pairs."""

    community_id: str
    """The Community ID v1 flow hash (corelight/community-id-spec), the same string Zeek,
    Suricata, Arkime and Elastic log for this flow, to join their records with flowlens's. Seed
    0 unless `--community-id-seed N` (`Config(community_id_seed=N)`) gives theirs. ICMP uses
    Zeek's type/counterpart mapping; a reply whose request came first shares its hash."""

    service: str | None
    """The protocol the connection speaks, told from the first payload bytes of each direction
    (up to 512 each, in sequence order): Zeek's service names (`http`, `ssl`, `ssh`, `dns`,
    `postgresql` ...), comma-separated when several match, as Zeek logs them. Null when no
    payload was seen, when the payload matched no protocol (as Zeek leaves it unset; `app` says
    `unidentified`), or when detection did not run (`flows` without `--services`,
    `analyze(analyzers=...)` without the ServiceAnalyzer). The outer UDP flow of a tunnel the
    decoder confirmed is named after it (`vxlan`, `geneve`, `gtpv1`, `teredo`, `ayiya`: see
    `tunnel_parents`), whether detection runs or not. See docs/services.md."""

    port_service: str | None
    """Name of the responder's port in flowlens's built-in table (Zeek's names: `http`, `ssl`,
    `ssh` ...), or null. A port is a convention, not a proof of what the connection speaks."""

    app: dict | None
    """Facts parsed from the first payload bytes (flat keys: TLS `tls_version`, `tls_sni`, `tls_alpn`;
    HTTP `http_method`, `http_host`; SSH `ssh_client`, `ssh_server` ...; docs/services.md lists
    them), `{"unidentified": true}` when payload was seen and matched no protocol; null when no
    payload was seen, detection did not run, or the flow is a tunnel's outer flow (its
    `service` names the tunnel). No payload is copied beyond these fields."""

    orig_pkts: int
    """Packets the originator sent."""

    resp_pkts: int
    """Packets the responder sent."""

    orig_bytes: int
    """Payload bytes the originator sent, as Zeek counts them for TCP: the sequence space its
    segments covered (so retransmitted bytes count once, and bytes missing from the capture
    count too: see `missed_bytes`); for UDP and ICMP the payload lengths summed."""

    resp_bytes: int
    """Payload bytes the responder sent (as `orig_bytes`)."""

    orig_ip_bytes: int
    """IP-level bytes the originator sent (IP headers and payload: each packet's IP total length)."""

    resp_ip_bytes: int
    """IP-level bytes the responder sent."""

    missed_bytes: int
    """Bytes of sequence space the capture never showed (lost before the capture point or
    dropped by it): Zeek's content gaps. 0 for UDP and ICMP."""

    conn_state: str
    """Zeek's connection state code (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR,
    OTH), by Zeek's rules (docs/zeek-conformance.md lists where flowlens still differs)."""

    history: str | None
    """Zeek's history letters (`ShADadFf` ...): upper case for the originator, lower case for
    the responder; null for ICMP (Zeek logs `-`)."""

    tunnel_parents: list[str] | None
    """The uids of the tunnels this connection's packets came out of (Zeek's conn.log
    `tunnel_parents`, a set: each packet's innermost encapsulation), sorted; null when it was
    not tunnelled. For VXLAN, Geneve, GTPv1, Teredo and AYIYA the uid is the outer UDP flow's,
    whose own record is there too (its `service` names the tunnel: `vxlan`, `geneve`, `gtpv1`,
    `teredo` once both sides sent Teredo, `ayiya`). For IP-in-IP and GRE it is the tunnel's
    own uid, as Zeek's tunnel.log gives one (the same for every packet between the same two
    addresses, either way round, until 24 hours of silence); such a tunnel has no record
    of its own, as in Zeek's conn.log. Tunnels inside tunnels are decoded to a depth of 4
    (Zeek's Tunnel::max_depth)."""

    vlan: int | None
    """The outermost 802.1Q VLAN id of the connection's first packet, or null when it was not
    tagged (Zeek's conn.log `vlan`, from policy/protocols/conn/vlan-logging.zeek). The VLAN
    ids are part of the connection key only with `--vlan-key` (Zeek's
    frameworks/conn_key/vlan_fivetuple.zeek, which logs them as `id.ctx.vlan`): without it the
    same 5-tuple on two VLANs is one connection, as in Zeek by default."""

    inner_vlan: int | None
    """The second (QinQ, 802.1ad) VLAN id of the first packet, or null (Zeek's `inner_vlan`; a
    third tag overwrites it, as Zeek's VLAN analyzer does)."""

    orig_state: str | None
    """The originator's TCP state (RFC 9293 names: ESTABLISHED, FIN_WAIT_2, TIME_WAIT ...) when
    the capture ended or the record was closed, from what the capture shows it did; TIME_WAIT
    ends 2 x MSL after it began (`--msl`). Null for UDP and ICMP."""

    resp_state: str | None
    """The responder's TCP state at the same moment (as `orig_state`)."""

    handshake: str | None
    """How the connection opened: `3way`, `simultaneous_open`, `rejected` (RST answering the
    SYN), `unanswered` (SYNs only), `incomplete` (no final ACK), `missing` (it began before the
    capture). Null for UDP and ICMP."""

    teardown: str | None
    """How it closed: `4way`, `3way` (FIN+ACK combined), `simultaneous`, `half_closed` (one FIN
    only), `reset_orig`, `reset_resp` (who sent the RST), `open` (still open at the end)."""

    close_initiator: str | None
    """Who closed first (the first FIN, or RST): `orig`, `resp`, or null."""

    originator_inferred: bool
    """True when no SYN said who opened the connection and the originator was chosen by Zeek's
    rules or by the port heuristic (a well-known port, else the lower port, is the server)."""

    synack_ms: float | None
    """Milliseconds from the SYN to the SYN/ACK, at the capture point: the responder's side of
    the handshake round trip (tshark: tcp.analysis.initial_rtt's first leg). Null without both."""

    ackdat_ms: float | None
    """Milliseconds from the SYN/ACK to the originator's ACK, at the capture point."""

    irtt_ms: float | None
    """`synack_ms + ackdat_ms`: the initial round-trip time (tshark's tcp.analysis.initial_rtt)."""

    retransmissions: int
    """Segments that Wireshark's TCP analysis rules (packet-tcp.c, as flowlens's TCP analysis
    applies them) call a retransmission, a fast retransmission or a spurious retransmission, both
    directions together; 0 for UDP and ICMP. The same count `flowlens anomalies` reports."""

    out_of_order: int
    """Segments below the next expected sequence number that arrived within the initial RTT of
    the highest one (Wireshark's tcp.analysis.out_of_order, 3 ms when the RTT is unknown):
    reordered on the way, not sent again."""

    syn_retries: int
    """SYNs the originator sent again with the same initial sequence number (0 for one SYN)."""

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ConnectionRecord:
        """The record from `Connection.to_record()`'s dict (Zeek's dotted names as keys)."""
        return cls(**{f.name: record[f.metadata.get("name", f.name)] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """The record with its printed (Zeek) field names, in the printed order."""
        return {f.metadata.get("name", f.name): getattr(self, f.name) for f in fields(self)}


def record_fields() -> tuple[str, ...]:
    """The printed field names, in order (what `flowlens flows --format csv` puts in its header)."""
    return tuple(f.metadata.get("name", f.name) for f in fields(ConnectionRecord))
