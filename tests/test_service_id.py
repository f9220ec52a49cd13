"""service_id names protocols from real first bytes, built here the way real clients send them."""

from __future__ import annotations

import random
import ssl
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlens.analyzers.service_id import MAX_BYTES, RULES, UNKNOWN, identify, mismatch
from flowlens.core.services import service_name


def client_hello(server_name: str = "example.test", alpn=("h2", "http/1.1")) -> bytes:
    """A real TLS ClientHello from Python's ssl module (OpenSSL), written into memory only."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def server_hello(version: int = 0x0303, supported: int | None = 0x0304) -> bytes:
    """A ServerHello record (RFC 8446 §4.1.3): legacy_version 0x0303 and, for TLS 1.3, the
    negotiated version in supported_versions."""
    ext = b""
    if supported is not None:
        ext = struct.pack(">HHH", 43, 2, supported)
    body = (
        struct.pack(">H", version)
        + bytes(range(32))  # random
        + b"\x20"
        + bytes(32)  # legacy_session_id_echo
        + b"\x13\x01\x00"  # TLS_AES_128_GCM_SHA256, null compression
        + struct.pack(">H", len(ext))
        + ext
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs


def dns_tcp(qname: str, *, reply: bool = False, ident: int = 0x1234) -> bytes:
    """A length-prefixed DNS message (RFC 1035 §4.2.2) made by dpkt."""
    msg = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=qname, type=dpkt.dns.DNS_A)])
    msg.op = dpkt.dns.DNS_RD  # dpkt's op is the whole flags word: set qr after it
    if reply:
        msg.op = dpkt.dns.DNS_RD | dpkt.dns.DNS_RA
        msg.qr = dpkt.dns.DNS_R
        msg.an = [dpkt.dns.DNS.RR(name=qname, type=dpkt.dns.DNS_A, ip=b"\xc0\x00\x02\x01")]
    raw = bytes(msg)
    return struct.pack(">H", len(raw)) + raw


def resp_command(*words: str) -> bytes:
    """A Redis command as clients send it: a RESP array of bulk strings."""
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        out.append(f"${len(word)}\r\n{word}\r\n".encode())
    return b"".join(out)


def pg_startup(**params: str) -> bytes:
    """PostgreSQL StartupMessage (protocol 3.0): Int32 length, Int32 196608, name/value pairs."""
    body = struct.pack(">I", 196608)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


PG_SSL_REQUEST = struct.pack(">II", 8, 80877103)


def mysql_greeting(version: bytes = b"8.0.36") -> bytes:
    """A MySQL Protocol::HandshakeV10 packet (sequence id 0)."""
    payload = (
        b"\x0a"
        + version
        + b"\0"
        + struct.pack("<I", 11)  # connection id
        + b"abcdefgh"  # auth-plugin-data part 1
        + b"\0"  # filler
        + struct.pack("<H", 0xFFFF)  # capability flags, lower
        + b"\xff"  # character set
        + struct.pack("<H", 2)  # status
        + struct.pack("<H", 0xDFFF)  # capability flags, upper
        + b"\x15"  # auth-plugin-data length
        + bytes(10)
        + b"ijklmnopqrst\0"
        + b"caching_sha2_password\0"
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def rdp_connection_request(cookie: bytes | None = b"Cookie: mstshash=alice\r\n") -> bytes:
    """TPKT + X.224 Connection Request + optional cookie + RDP_NEG_REQ (MS-RDPBCGR 2.2.1.1)."""
    neg = struct.pack("<BBHI", 1, 0, 8, 0x0B)  # PROTOCOL_SSL | HYBRID | RDSTLS
    x224_rest = b"\xe0" + b"\x00\x00" + b"\x00\x00" + b"\x00" + (cookie or b"") + neg
    x224 = bytes([len(x224_rest)]) + x224_rest
    return b"\x03\x00" + struct.pack(">H", 4 + len(x224)) + x224


def rdp_connection_confirm() -> bytes:
    neg = struct.pack("<BBHI", 2, 0, 8, 1)
    x224_rest = b"\xd0\x00\x00\x12\x34\x00" + neg
    x224 = bytes([len(x224_rest)]) + x224_rest
    return b"\x03\x00" + struct.pack(">H", 4 + len(x224)) + x224


def smb2_negotiate() -> bytes:
    """NetBIOS session message carrying an SMB2 NEGOTIATE request (MS-SMB2 2.2.3)."""
    header = b"\xfeSMB" + struct.pack(
        "<HHIHHIIQIIQ16s", 64, 0, 0, 0, 31, 0, 0, 0, 0xFEFF, 0, 0, b""
    )
    dialects = struct.pack("<HHHHI16sIHH", 36, 2, 1, 0, 0x7F, b"\x11" * 16, 0, 0, 0)
    dialects += struct.pack("<HH", 0x0202, 0x0311)
    smb = header + dialects
    return b"\x00" + len(smb).to_bytes(3, "big") + smb


def smb1_negotiate() -> bytes:
    header = b"\xffSMB" + b"\x72" + bytes(27)
    body = b"\x00" + struct.pack("<H", 12) + b"\x02NT LM 0.12\x00"
    smb = header + body
    return b"\x00" + len(smb).to_bytes(3, "big") + smb


# ---- positives ---------------------------------------------------------------------------------


def test_tls13_client_hello_gives_sni_and_alpn():
    hello = client_hello("www.example.test")
    found = identify(hello, b"")
    assert found.service == "ssl"
    assert found.app["tls_sni"] == "www.example.test"
    assert found.app["tls_alpn"] == ["h2", "http/1.1"]
    assert found.app["tls_record_version"] in ("TLSv10", "TLSv12")  # OpenSSL writes 0x0301
    assert found.app["tls_client_version"] == "TLSv12"  # TLS 1.3 keeps legacy_version 0x0303


def test_tls_server_hello_version_comes_from_supported_versions():
    found = identify(client_hello(), server_hello())
    assert found.service == "ssl" and found.app["tls_version"] == "TLSv13"
    assert identify(b"", server_hello(supported=None)).app == {"tls_version": "TLSv12"}


def test_tls_client_hello_without_sni_or_alpn():
    found = identify(client_hello(alpn=()), b"")
    assert found.service == "ssl" and "tls_alpn" not in found.app


def test_tls_client_hello_cut_short_is_still_ssl():
    hello = client_hello()
    assert identify(hello[:60], b"").service == "ssl"
    assert "tls_sni" not in identify(hello[:60], b"").app


def test_http_request_and_response():
    request = b"GET /index.html HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    response = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.12.3\r\n\r\n"
    found = identify(request, response)
    assert found.service == "http"
    assert found.app == {"http_method": "GET", "http_host": "www.example.test", "http_status": 200}


def test_http_request_with_long_target_cut_short():
    request = b"POST /" + b"a" * 600 + b" HTTP/1.1\r\n"
    assert identify(request, b"").service == "http"
    assert identify(request[: MAX_BYTES - 1], b"").service == UNKNOWN  # not cut: no version


def test_ssh_identification_strings():
    client = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"
    server = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n" + b"\x00\x00\x04\x5c\x06\x14" + bytes(40)
    found = identify(client, server)
    assert found.service == "ssh"
    assert found.app == {
        "ssh_client": "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13",
        "ssh_server": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    }
    assert identify(b"", b"SSH-1.99-Cisco-1.25\r\n").service == "ssh"  # banner grab


def test_smtp_greeting_and_ehlo():
    greeting = b"220 mail.example.test ESMTP Postfix (Debian/GNU)\r\n250-mail.example.test\r\n"
    assert identify(b"EHLO client.example.test\r\n", greeting).service == "smtp"
    assert identify(b"", b"220 mail.example.test ESMTP ready\r\n").service == "smtp"


def test_ftp_greeting_and_user():
    server = b"220 (vsFTPd 3.0.3)\r\n331 Please specify the password.\r\n"
    assert identify(b"USER anonymous\r\nPASS x@y\r\n", server).service == "ftp"
    assert identify(b"", b"220 ProFTPD Server (Debian) [::ffff:10.0.0.1]\r\n").service == "ftp"
    # An FTP client does not say EHLO, an SMTP client does not say USER.
    assert identify(b"USER anonymous\r\n", b"220 mail ESMTP\r\n530 no\r\n").service == "ftp"


def test_ftp_multi_line_greeting_then_user():
    """RFC 959 §4.2: a greeting of several lines ("220-" ... "220 ") is one reply; the server's
    side ends there when the client's USER comes (Pure-FTPd in the corpus's ftp__bigtransfer)."""
    greeting = (
        b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n"
        b"220-You are user number 1 of 50 allowed.\r\n"
        b"220 You will be disconnected after 15 minutes of inactivity.\r\n"
    )
    assert identify(b"USER ftp\r\n", greeting).service == "ftp"
    assert identify(b"USER ftp\r\n", greeting + b"331 Any password will work\r\n").service == "ftp"
    # a greeting cut by the buffer's end before its last line is still the greeting
    long = b"220-Welcome\r\n" + b"220-" + b"x" * 600 + b"\r\n220 ready\r\n"
    assert identify(b"USER ftp\r\n", long).service == "ftp"
    # never finished and not cut: lines of something else after "220-"
    assert identify(b"USER ftp\r\n", b"220-hi\r\nhello\r\n").service == "unknown"
    # something else after a finished greeting is not FTP's answer to USER
    assert identify(b"USER ftp\r\n", greeting + b"*1\r\n$4\r\nPING\r\n").service == "unknown"


def test_pop3_and_imap():
    assert identify(b"CAPA\r\n", b"+OK Dovecot (Debian) ready.\r\n").service == "pop3"
    assert identify(b"USER bob\r\n", b"+OK POP3 server ready\r\n").service == "pop3"
    greeting = (
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE] Dovecot ready.\r\n"
    )
    assert identify(b"a1 CAPABILITY\r\n", greeting).service == "imap"
    assert identify(b"", greeting).service == "imap"


def test_irc():
    client = b"NICK alice\r\nUSER alice 0 * :Alice\r\n"
    server = b":irc.example.test NOTICE * :*** Looking up your hostname...\r\n"
    assert identify(client, server).service == "irc"
    assert identify(client, b":irc.example.test 001 alice :Welcome\r\n").service == "irc"


def test_dns_over_tcp():
    assert identify(dns_tcp("example.test"), dns_tcp("example.test", reply=True)).service == "dns"
    assert identify(dns_tcp("example.test"), b"").service == "dns"
    # A reply to another question is not the answer to this query.
    assert identify(dns_tcp("example.test"), dns_tcp("other.test", reply=True)).service == UNKNOWN


def test_redis_resp():
    assert identify(resp_command("PING"), b"+PONG\r\n").service == "redis"
    assert identify(resp_command("SET", "k", "v"), b"+OK\r\n").service == "redis"
    assert identify(resp_command("GET", "k"), b"$-1\r\n").service == "redis"
    assert identify(resp_command("COMMAND", "DOCS"), b"*342\r\n").service == "redis"


def test_postgresql_startup_and_sslrequest():
    startup = pg_startup(user="postgres", database="app", application_name="psql")
    auth_ok = b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert identify(startup, auth_ok).service == "postgresql"
    assert identify(pg_startup(database="app", user="u"), b"").service == "postgresql"
    assert identify(PG_SSL_REQUEST, b"N").service == "postgresql"
    found = identify(PG_SSL_REQUEST + client_hello("db.example.test"), b"S")
    assert found.service == "postgresql" and found.app["tls_sni"] == "db.example.test"


def test_mysql_greeting():
    found = identify(b"", mysql_greeting())
    assert found.service == "mysql" and found.app["mysql_server_version"] == "8.0.36"
    response = b"\x20\x00\x00\x01" + bytes(32)  # Handshake Response, sequence id 1
    assert identify(response, mysql_greeting(b"5.7.44-log")).service == "mysql"


def test_rdp_connection_request():
    assert identify(rdp_connection_request(), rdp_connection_confirm()).service == "rdp"
    assert identify(rdp_connection_request(cookie=None), b"").service == "rdp"


def test_smb_negotiate():
    assert identify(smb2_negotiate(), b"").service == "smb"
    assert identify(smb1_negotiate(), smb2_negotiate()).service == "smb"


def ldap_bind(long_form: bool) -> bytes:
    """An LDAPMessage with a simple BindRequest (RFC 4511 §4.2), short or long BER lengths."""
    bind = b"\x02\x01\x03" + b"\x04\x00" + b"\x80\x00"  # version 3, name "", simple ""
    op = b"\x60" + bytes([len(bind)]) + bind
    body = b"\x02\x01\x01" + op
    if long_form:  # Windows clients: 0x84 and four length bytes
        return b"\x30\x84" + len(body).to_bytes(4, "big") + body
    return b"\x30" + bytes([len(body)]) + body


def test_ldap_bind_and_ntlm_inside():
    bind_response = b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00"
    assert identify(ldap_bind(False), bind_response).service == "ldap_tcp"
    assert identify(ldap_bind(True), b"").service == "ldap_tcp"
    # A SASL bind carrying an NTLM NEGOTIATE message (MS-NLMP 2.2.1.1) inside GSS-SPNEGO.
    sasl = ldap_bind(True) + b"\x04\x0aGSS-SPNEGO\x04\x20NTLMSSP\x00\x01\x00\x00\x00" + bytes(20)
    assert identify(sasl, b"").service == "ldap_tcp,ntlm"


# ---- negatives ---------------------------------------------------------------------------------


def test_no_payload_is_none_and_one_byte_is_unknown():
    assert identify(b"", b"").service is None
    assert identify(b"", b"").app == {}
    assert identify(b"\x16", b"").service == UNKNOWN
    assert identify(b"S", b"").service == UNKNOWN


@pytest.mark.parametrize(
    "orig, resp",
    [
        (b"GET is what I want\r\n", b""),  # a method word is not a request line
        (b"HTTP is a protocol\r\n", b""),
        (b"", b"HTTP/1.1 OK\r\n"),  # no status code
        (b"SSH-2.0-OpenSSH\r\n", b"\x8f\x12garbage"),  # server did not identify
        (b"SSH-3.0-x\r\n", b""),
        (b"SSH-2.0-\r\n", b""),  # empty softwareversion
        (b"hello\r\n", b"220 welcome\r\n"),  # neither EHLO nor USER
        (b"", b"220 welcome\r\n"),  # a bare greeting: SMTP or FTP
        (b"+OK\r\n", b""),  # wrong side
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", b""),  # record too short for a hello
        (b"\x16\x03\x05\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), b""),  # no TLS 1.4 record
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2e", b""),  # CancelRequest-like, not SSLRequest
        (b"*1\r\n$4\r\nPIN", b""),  # RESP cut short but not at the buffer's end
        (b"*2\r\n$3\r\nGET\r\n", b"\x00\x01\x02\r\n"),  # server is not RESP
        (b"\x03\x00\x00\x0b\x06\xe0\x00\x00\x00\x00\x00", b""),  # bare X.224 CR (S7comm)
        (b"\x00\x00\x00\x10\xfeSMB" + bytes(8), b""),  # too short for an SMB2 header
        (b"\x00\x00\x00\x50\x0a5.7\x00", b""),  # MySQL greeting sent by the client side
    ],
)
def test_text_that_only_looks_similar_is_unknown(orig, resp):
    assert identify(orig, resp).service == UNKNOWN


def test_random_bytes_are_unknown():
    rng = random.Random(20)
    for _ in range(200):
        orig = rng.randbytes(rng.randrange(1, MAX_BYTES))
        resp = rng.randbytes(rng.randrange(0, MAX_BYTES))
        assert identify(orig, resp).service == UNKNOWN


@settings(max_examples=500, deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.integers(0, MAX_BYTES + 64),
    st.integers(0, MAX_BYTES + 64),
)
def test_random_bytes_never_match_a_strict_signature(rng, orig_len, resp_len):
    """No rule fires on random bytes. The bytes come from a seeded generator, not st.binary():
    Hypothesis seeds st.binary() with literals found in the code under test (it found the
    8-byte PostgreSQL SSLRequest), which is exactly not random."""
    orig, resp = rng.randbytes(orig_len), rng.randbytes(resp_len)
    found = identify(orig, resp)
    if not orig and not resp:
        assert found.service is None
    else:
        assert found.service == UNKNOWN
        assert found.app == {}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_BYTES + 64), st.binary(max_size=MAX_BYTES + 64))
def test_any_bytes_give_a_name_and_never_raise(orig, resp):
    """Arbitrary (and Hypothesis's code-mined) bytes: identify never raises and names only
    services from RULES; half-built structures near the signatures exercise the length checks."""
    found = identify(orig, resp)
    assert set(found.services) <= {name for name, _rule in RULES}
    assert (found.service is None) == (not orig[:MAX_BYTES] and not resp[:MAX_BYTES])


def test_identification_is_cut_to_max_bytes():
    request = b"GET / HTTP/1.1\r\nX: " + b"x" * 600 + b"\r\nHost: late.example\r\n\r\n"
    found = identify(request, b"")
    assert found.service == "http" and "http_host" not in found.app


# ---- mismatch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service, port, expected",
    [
        ("ssh", 22, False),
        ("ssh", 443, True),
        ("http", 5432, True),
        ("ssl", 80, True),
        ("redis", 80, True),
        ("http", 8080, False),
        ("ssl", 8443, False),
        ("ssl", 993, False),  # imaps: implicit TLS
        ("ssl", 853, False),  # DNS over TLS
        ("smtp", 587, False),
        ("ssh", 2222, False),  # unregistered port: nothing to differ from
        ("unknown", 443, False),
        (None, 443, False),
        ("ftp,ssl", 21, False),
        ("ldap_tcp,ntlm", 389, False),
        ("smb", 139, False),
    ],
)
def test_mismatch(service, port, expected):
    assert mismatch(service, "tcp", port) is expected


def test_port_names_are_zeek_service_names():
    assert service_name("tcp", 8080) == "http"
    assert service_name("tcp", 8443) == "ssl"
    assert service_name("tcp", 3128) == "http"
    assert service_name("tcp", 443) == "ssl"
    assert service_name("tcp", 389) == "ldap_tcp"
