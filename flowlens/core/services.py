"""Port -> service name (a built-in subset of the IANA registry) and ephemeral port ranges.

No lookup in /etc/services: output must not depend on the machine that reads the capture.
Where Zeek attaches one of its analyzers to the port by default, the name is Zeek's service name
(the `ports` constants of scripts/base/protocols/*/main.zeek: 8080 and 3128 are `http`, 8443 is
not in Zeek's list but is HTTPS, so `ssl`; 587 `smtp`; 465, 636, 993, 995 `ssl` (ssl_ports);
139 `smb`; 88 `krb_tcp`, 135 `dce_rpc`, 389 `ldap_tcp`); other ports keep their IANA name.
This is `port_service`: what the port is registered to, not what was spoken
(flowlens.analyzers.service_id names that).
"""

from __future__ import annotations

__all__ = [
    "service_name",
    "expected_service",
    "EPHEMERAL_RANGES",
    "LINUX_EPHEMERAL",
    "is_well_known",
    "fits_ranges",
]

TCP_SERVICES = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http",
    88: "krb_tcp", 110: "pop3", 111: "sunrpc", 119: "nntp", 123: "ntp", 135: "dce_rpc",
    139: "smb", 143: "imap", 179: "bgp", 389: "ldap_tcp", 443: "ssl", 445: "smb",
    465: "ssl", 514: "rsh", 587: "smtp", 636: "ssl", 853: "dns-over-tls",
    873: "rsync", 993: "ssl", 995: "ssl", 1080: "socks", 1433: "mssql", 1521: "oracle",
    1883: "mqtt", 2049: "nfs", 2181: "zookeeper", 2379: "etcd", 3128: "http",
    3306: "mysql", 3389: "rdp", 5060: "sip", 5222: "xmpp", 5432: "postgresql", 5672: "amqp",
    5900: "vnc", 6379: "redis", 6443: "kubernetes", 6667: "irc", 8080: "http",
    8443: "ssl", 9042: "cassandra", 9092: "kafka", 9200: "elasticsearch",
    11211: "memcached", 27017: "mongodb",
}  # fmt: skip
UDP_SERVICES = {
    53: "dns", 67: "dhcp", 68: "dhcp", 69: "tftp", 123: "ntp", 137: "netbios-ns",
    138: "netbios-dgm", 161: "snmp", 162: "snmp-trap", 443: "quic", 500: "isakmp",
    514: "syslog", 1194: "openvpn", 1900: "ssdp", 3478: "stun", 3544: "teredo",
    4500: "ipsec-nat-t", 4789: "vxlan", 5060: "sip", 5353: "mdns", 5355: "llmnr",
    11211: "memcached", 51820: "wireguard",
}  # fmt: skip

#: Ephemeral (dynamic) source port ranges of common systems, inclusive.
LINUX_EPHEMERAL = (32768, 60999)
EPHEMERAL_RANGES = {
    "Linux": LINUX_EPHEMERAL,
    "Windows/macOS (IANA)": (49152, 65535),
    "old BSD/Windows XP": (1024, 5000),
}


def service_name(proto: str, port: int) -> str | None:
    """The service usually found on `port` for `proto` ('tcp'/'udp'), or None."""
    if proto == "tcp":
        return TCP_SERVICES.get(port)
    if proto == "udp":
        return UDP_SERVICES.get(port)
    return None


#: Port names whose service is spoken inside TLS: DNS over TLS (RFC 7858) is detected as `ssl`.
_TLS_WRAPPED = {"dns-over-tls": "ssl"}


def expected_service(port_service: str | None) -> str | None:
    """The Zeek service a connection to a port named `port_service` should be detected as, or
    None when the port's name is not a service flowlens detects (so no mismatch can be told)."""
    if port_service is None:
        return None
    return _TLS_WRAPPED.get(port_service, port_service)


def is_well_known(proto: str, port: int) -> bool:
    """True for ports below 1024 and for the server ports in the table above."""
    return port < 1024 or service_name(proto, port) is not None


def fits_ranges(ports) -> list[str]:
    """Names of the ephemeral ranges that contain every one of `ports`."""
    ports = list(ports)
    if not ports:
        return []
    low, high = min(ports), max(ports)
    return [name for name, (lo, hi) in EPHEMERAL_RANGES.items() if lo <= low and high <= hi]
