"""Select connections the way `ss` filters sockets: by state, port, host, network, protocol, uid."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import UsageError
from .connections import Connection, format_addr

__all__ = [
    "Selection",
    "normalize_state",
    "ZEEK_CONN_STATES",
    "TCP_STATE_NAMES",
    "SS_STATE_NAMES",
    "STATE_GROUPS",
]

#: the one spelling of a TCP state in every output of flowlens (flows' orig_state/resp_state,
#: the states table and JSON, ladders, timelines, findings): RFC 9293 §3.3.2's names with
#: underscores, as Linux's kernel spells them (include/net/tcp_states.h: TCP_SYN_RECV is the
#: one it shortens; flowlens keeps the RFC's SYN_RECEIVED)
TCP_STATE_NAMES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
)  # fmt: skip
#: how ss(8) spells each state, in its output and in its `state` filter (iproute2's
#: misc/ss.c sstate_name and sstate_namel): accepted as input (--state estab), never printed
SS_STATE_NAMES = {
    "CLOSED": ("UNCONN", "closed"), "LISTEN": ("LISTEN", "listening"),
    "SYN_SENT": ("SYN-SENT", "syn-sent"), "SYN_RECEIVED": ("SYN-RECV", "syn-recv"),
    "ESTABLISHED": ("ESTAB", "established"), "FIN_WAIT_1": ("FIN-WAIT-1", "fin-wait-1"),
    "FIN_WAIT_2": ("FIN-WAIT-2", "fin-wait-2"), "CLOSE_WAIT": ("CLOSE-WAIT", "close-wait"),
    "CLOSING": ("CLOSING", "closing"), "LAST_ACK": ("LAST-ACK", "last-ack"),
    "TIME_WAIT": ("TIME-WAIT", "time-wait"),
}  # fmt: skip
ZEEK_CONN_STATES = (
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
)

# every other spelling accepted for a state (case, '-' or '_' do not matter): ss's output
# and filter names, and the kernel's TCP_SYN_RECV / TCP_FIN_WAIT1 / TCP_FIN_WAIT2
_ALIASES = {
    alias.upper().replace("-", "_"): name
    for name, spellings in SS_STATE_NAMES.items()
    for alias in spellings
} | {"SYN_RECV": "SYN_RECEIVED", "FIN_WAIT1": "FIN_WAIT_1", "FIN_WAIT2": "FIN_WAIT_2"}
#: ss(8)'s state groups (its man page, STATE-FILTER), as sets of TCP_STATE_NAMES
STATE_GROUPS = {
    "all": set(TCP_STATE_NAMES),
    "connected": set(TCP_STATE_NAMES) - {"LISTEN", "CLOSED"},
    "synchronized": set(TCP_STATE_NAMES) - {"LISTEN", "CLOSED", "SYN_SENT"},
    "bucket": {"SYN_RECEIVED", "TIME_WAIT"},
    "big": set(TCP_STATE_NAMES) - {"SYN_RECEIVED", "TIME_WAIT"},
}
_GROUPS = {k.upper(): v for k, v in STATE_GROUPS.items()}


def normalize_state(text: str) -> set[str]:
    """`time-wait`, `TIME_WAIT`, `estab`, `syn-recv`, `connected` -> set of TCP state names (ss's
    spellings are accepted, TCP_STATE_NAMES come out), or a Zeek
    conn_state code (`SF`, `REJ`) as a one-element set; raises UsageError otherwise."""
    upper = text.strip().upper().replace("-", "_")
    if text.strip().upper() in ZEEK_CONN_STATES:
        return {"conn_state:" + text.strip().upper()}
    upper = _ALIASES.get(upper, upper)
    if upper in TCP_STATE_NAMES:
        return {upper}
    if upper in _GROUPS:
        return set(_GROUPS[upper])
    raise UsageError(
        f"unknown state {text!r} (use a TCP state like time-wait or close-wait, an ss group like "
        f"connected, or a Zeek conn_state like SF or REJ)"
    )


@dataclass
class Selection:
    """Which connections to keep; an empty field matches everything. Fields are OR-ed within
    themselves (two --port values: either) and AND-ed across."""

    states: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    nets: list = field(default_factory=list)
    protos: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, states=(), ports=(), hosts=(), nets=(), protos=(), uids=()) -> Selection:
        if hosts or nets:
            import ipaddress  # (here: most runs have no host or network filter)

        wanted: set[str] = set()
        for s in states:
            wanted |= normalize_state(s)
        parsed_nets = []
        for n in nets:
            try:
                parsed_nets.append(ipaddress.ip_network(n, strict=False))
            except ValueError:
                raise UsageError(f"bad network {n!r} (expected CIDR like 10.0.0.0/8)") from None
        norm_hosts = set()
        for h in hosts:
            try:
                norm_hosts.add(str(ipaddress.ip_address(h)))
            except ValueError:
                raise UsageError(f"bad host address {h!r}") from None
        return cls(
            wanted, set(ports), norm_hosts, parsed_nets, {p.lower() for p in protos}, set(uids)
        )

    def __bool__(self) -> bool:
        return bool(
            self.states or self.ports or self.hosts or self.nets or self.protos or self.uids
        )

    def matches(self, c: Connection) -> bool:
        if self.protos and c.proto_name not in self.protos:
            return False
        if self.uids and not any(c.uid == u or c.uid.startswith(u) for u in self.uids):
            return False
        if self.ports and c.orig_p not in self.ports and c.resp_p not in self.ports:
            return False
        if self.hosts or self.nets:
            addrs = (format_addr(c.orig_h), format_addr(c.resp_h))
            if self.hosts and not (addrs[0] in self.hosts or addrs[1] in self.hosts):
                return False
            if self.nets:
                import ipaddress

                ips = [ipaddress.ip_address(a) for a in addrs]
                if not any(ip.version == n.version and ip in n for ip in ips for n in self.nets):
                    return False
        if self.states:
            codes = {s[11:] for s in self.states if s.startswith("conn_state:")}
            names = {s for s in self.states if not s.startswith("conn_state:")}
            hit = False
            if codes and c.conn_state in codes:
                hit = True
            if names and (c.orig_state in names or c.resp_state in names):
                hit = True
            if not hit:
                return False
        return True

    def filter(self, conns: Iterable[Connection]) -> Iterator[Connection]:
        """The connections of `conns` that match, lazily; all of them, without a generator in
        between, when nothing is selected."""
        if not self:
            return iter(conns)
        return (c for c in conns if self.matches(c))
