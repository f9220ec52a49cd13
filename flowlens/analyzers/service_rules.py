"""The rules that name a protocol from the first bytes of each direction, one per service.

A rule is a pure function ``(orig, resp, app) -> matched``: the originator's and the
responder's first payload bytes, each in sequence order and at most ``MAX_BYTES`` long (either
may be empty or cut short), and a dict it adds parsed facts to when it matches. ``RULES`` lists
them in the order their names are joined; service_id.py's ``identify`` runs them, and its
``ServiceAnalyzer`` gathers the bytes.

The byte patterns follow Zeek's dynamic protocol detection (the ``dpd.sig`` signature files under
``scripts/base/protocols/``) and, where Zeek has no signature (DNS, MySQL, IMAP are attached by
port in Zeek), the first message its analyzer parses (``src/analyzer/protocol/*``) and the
protocol's RFC. Each rule cites its source. Rules are stricter than Zeek's regular expressions
where Zeek relies on its analyzer to confirm afterwards: flowlens has no analyzer behind the
signature, so the signature itself checks lengths and structure (see docs/services.md).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

__all__ = [
    "HTTP_METHODS",
    "MAX_BYTES",
    "RULES",
    "Rule",
    "TLS_VERSIONS",
    "tls_client_hello",
    "tls_server_hello",
]

#: Bytes kept per direction (issue 20: "the first 512 bytes of the first data segments"): the
#: most a rule sees of each side, so a message that reaches it may have been cut there.
MAX_BYTES = 512

# A rule: (orig, resp, app) -> matched; it may add facts to ``app`` only when it matches.
Rule = Callable[[bytes, bytes, dict], bool]


def _cut(data: bytes) -> bool:
    """True when ``data`` may have been cut at the buffer's end (so a missing end is fine)."""
    return len(data) >= MAX_BYTES


def _first_line(data: bytes) -> bytes | None:
    """The first line without its end, or None if no line end is in ``data`` (and not cut)."""
    end = data.find(b"\n")
    if end < 0:
        return data if _cut(data) else None
    return data[:end].rstrip(b"\r")


def _text(raw: bytes, limit: int = 255) -> str:
    return raw[:limit].decode("ascii", "replace")


# ---- TLS (Zeek: "ssl") -----------------------------------------------------------------------
# scripts/base/protocols/ssl/dpd.sig: dpd_tls_client /^\x16\x03[\x00-\x03]..\x01...\x03[\x00-\x03]/
# and dpd_tls_server /^(\x15\x03[\x00-\x03]....)?\x16\x03[\x00-\x03]..\x02...(\x03[\x00-\x04]|\x7F..)/;
# each side alone enables the analyzer. Records and handshake layout: RFC 8446 §5.1, §4.1.2-4.1.3;
# extensions: RFC 6066 §3 (server_name), RFC 7301 §3.1 (ALPN), RFC 8446 §4.2.1 (supported_versions).
# Version names as Zeek's ssl.log writes them (scripts/base/protocols/ssl/consts.zeek).
TLS_VERSIONS = {
    0x0300: "SSLv3",
    0x0301: "TLSv10",
    0x0302: "TLSv11",
    0x0303: "TLSv12",
    0x0304: "TLSv13",
}
_MAX_RECORD = (1 << 14) + 2048  # RFC 8446 §5.2: TLSCiphertext.length <= 2^14 + 2048
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43


def _tls_version(value: int) -> str:
    return TLS_VERSIONS.get(value, f"0x{value:04x}")


def _tls_handshake(data: bytes, msg_type: int) -> tuple[int, bytes] | None:
    """(record version, handshake body so far) if ``data`` opens with a TLS handshake record
    whose first message is ``msg_type``; the body may be cut short by the buffer."""
    if len(data) < 11 or data[0] != 0x16 or data[1] != 3 or data[2] > 3:
        return None
    rec_len = (data[3] << 8) | data[4]
    hs_len = (data[6] << 16) | (data[7] << 8) | data[8]
    if data[5] != msg_type or not 38 <= rec_len <= _MAX_RECORD or hs_len < 34:
        return None
    # The message may span records (fragmentation, RFC 8446 §5.1) but never exceeds 2^24.
    body = data[9 : 9 + min(hs_len, rec_len - 4)]
    return (data[1] << 8) | data[2], body


def _extensions(body: bytes, at: int) -> dict[int, bytes]:
    """Extensions from offset ``at`` of a hello body (those cut short are left out)."""
    out: dict[int, bytes] = {}
    if at + 2 > len(body):
        return out
    end = min(len(body), at + 2 + struct.unpack_from(">H", body, at)[0])
    at += 2
    while at + 4 <= end:
        kind, length = struct.unpack_from(">HH", body, at)
        if at + 4 + length > end:
            break
        out[kind] = body[at + 4 : at + 4 + length]
        at += 4 + length
    return out


def tls_client_hello(data: bytes) -> dict | None:
    """Facts of a ClientHello at the start of ``data``, or None if it does not open with one."""
    hello = _tls_handshake(data, 1)
    if hello is None:
        return None
    record_version, body = hello
    if body[0] != 3 or body[1] > 3:  # legacy_version 0x0300..0x0303
        return None
    facts: dict[str, object] = {
        "tls_record_version": _tls_version(record_version),
        "tls_client_version": _tls_version((body[0] << 8) | body[1]),
    }
    at = 34  # legacy_version (2) + random (32)
    for width in (1, 2, 1):  # session id, cipher suites, compression methods
        if at + width > len(body):
            return facts
        at += width + int.from_bytes(body[at : at + width], "big")
    ext = _extensions(body, at)
    sni = ext.get(EXT_SERVER_NAME, b"")
    # server_name_list: u16 length, then (u8 type, u16 length, name); type 0 is host_name.
    if len(sni) >= 5 and sni[2] == 0:
        name_len = struct.unpack_from(">H", sni, 3)[0]
        facts["tls_sni"] = _text(sni[5 : 5 + name_len])
    alpn = ext.get(EXT_ALPN, b"")
    protocols, at = [], 2
    while at < len(alpn):
        protocols.append(_text(alpn[at + 1 : at + 1 + alpn[at]]))
        at += 1 + alpn[at]
    if protocols:
        facts["tls_alpn"] = protocols
    return facts


def tls_server_hello(data: bytes) -> dict | None:
    """Facts of a ServerHello at the start of ``data`` (after an optional alert record, as in
    Zeek's signature), or None."""
    if len(data) >= 7 and data[0] == 0x15 and data[1] == 3 and data[2] <= 3:
        data = data[7:]  # dpd_tls_server: (\x15\x03[\x00-\x03]....)?
    hello = _tls_handshake(data, 2)
    if hello is None:
        return None
    _record_version, body = hello
    legacy = (body[0] << 8) | body[1]
    if not (body[0] == 3 and body[1] <= 4) and body[0] != 0x7F:  # 0x7Fxx: TLS 1.3 drafts
        return None
    version = legacy
    at = 34
    if at < len(body):
        at += 1 + body[at]  # session id
        ext = _extensions(body, at + 3)  # cipher suite (2) + compression method (1)
        chosen = ext.get(EXT_SUPPORTED_VERSIONS, b"")
        if len(chosen) == 2:  # RFC 8446 §4.2.1: the negotiated version is here, not in legacy
            version = struct.unpack(">H", chosen)[0]
    return {"tls_version": _tls_version(version)}


def _rule_ssl(orig: bytes, resp: bytes, app: dict) -> bool:
    client, server = tls_client_hello(orig), tls_server_hello(resp)
    if client is None and server is None:
        return False
    app.update(client or {})
    app.update(server or {})
    return True


# ---- HTTP/1.x --------------------------------------------------------------------------------
# scripts/base/protocols/http/dpd.sig: dpd_http_client (a method at the start) and
# dpd_http_server /^[hH][tT][tT][pP]\/[0-9]/, each side alone. Stricter than the signature (Zeek's
# HTTP analyzer then parses the request line): RFC 9112 §3 request-line "method SP target SP
# HTTP/d.d" and §4 status-line "HTTP/d.d SP 3DIGIT".
HTTP_METHODS = (
    "OPTIONS|GET|HEAD|POST|PUT|DELETE|QUERY|ACL|BASELINE-CONTROL|BIND|CHECKIN|CHECKOUT|CONNECT|"
    "COPY|LABEL|LINK|LOCK|MERGE|MKACTIVITY|MKCALENDAR|MKCOL|MKREDIRECTREF|MOVE|ORDERPATCH|PATCH|"
    "PROPFIND|PROPPATCH|REBIND|REPORT|SEARCH|TRACE|UNBIND|UNCHECKOUT|UNLINK|UNLOCK|UPDATE|"
    "VERSION-CONTROL|BCOPY|BDELETE|BMOVE|BPROPFIND|BPROPPATCH|NOTIFY|POLL|SUBSCRIBE|UNSUBSCRIBE|"
    "X-MS-ENUMATTS|MKWORKSPACE|RPC_IN_DATA|RPC_OUT_DATA"
)
_HTTP_REQUEST = re.compile(
    rb"[ \t\r\n]*(" + HTTP_METHODS.encode() + rb") +([\x21-\x7e]+) +HTTP/[0-9]\.[0-9]\r?\n"
)
# Cut short inside a long target: the method and the start of the target are enough.
_HTTP_REQUEST_CUT = re.compile(rb"[ \t\r\n]*(" + HTTP_METHODS.encode() + rb") +([\x21-\x7e]+)\Z")
_HTTP_STATUS = re.compile(rb"HTTP/[0-9]\.[0-9] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n")
_HTTP_HOST = re.compile(rb"\r?\n[Hh][Oo][Ss][Tt][ \t]*:[ \t]*([^\r\n]*)")


def _rule_http(orig: bytes, resp: bytes, app: dict) -> bool:
    request = _HTTP_REQUEST.match(orig) or (_cut(orig) and _HTTP_REQUEST_CUT.match(orig))
    status = _HTTP_STATUS.match(resp)
    if not request and not status:
        return False
    if request:
        app["http_method"] = request.group(1).decode()
        host = _HTTP_HOST.search(orig, request.end() - 2)
        if host:
            app["http_host"] = _text(host.group(1).strip())
    if status:
        app["http_status"] = int(status.group(1))
    return True


# ---- SSH -------------------------------------------------------------------------------------
# scripts/base/protocols/ssh/dpd.sig: both sides /^[sS][sS][hH]-[12]\./ (dpd_ssh_client requires
# dpd_ssh_server). Stricter: RFC 4253 §4.2 "SSH-protoversion-softwareversion SP comments CR LF",
# printable US-ASCII without spaces (the RFC also forbids '-' in softwareversion, but real servers
# send "SSH-1.99-Cisco-1.25", so '-' is allowed there); protoversion 2.0,
# or 1.x / 1.99 (RFC 4253 §5.1). One side alone is accepted when the other side is empty (a banner
# grab, a one-sided capture); when both sent bytes, both must be identification strings.
_SSH_ID = re.compile(rb"SSH-(2\.0|1\.[0-9]{1,2})-([\x21-\x7e]+)( [\x20-\x7e]*)?\r?\n")


def _ssh_id(data: bytes) -> str | None:
    found = _SSH_ID.match(data)
    if found:
        return _text(found.group(0).rstrip(b"\r\n"))
    return None


def _rule_ssh(orig: bytes, resp: bytes, app: dict) -> bool:
    client, server = _ssh_id(orig), _ssh_id(resp)
    if (client or not orig) and (server or not resp) and (client or server):
        if client:
            app["ssh_client"] = client
        if server:
            app["ssh_server"] = server
        return True
    return False


# ---- SMTP, FTP, POP3, IMAP, IRC: line protocols --------------------------------------------------
# Zeek needs both sides for each of these (requires-reverse-signature), since a "220 " greeting
# alone is SMTP or FTP. flowlens follows that; with the client side empty it falls back to the
# greeting's own words (flowlens's rule, not Zeek's: "ESMTP"/"SMTP" or "FTP" in a 220 line).
_LINE = rb"(?:^|[\r\n])[ \t]*"
# scripts/base/protocols/smtp/dpd.sig: server /^[[:space:]]*220[[:space:]-]/, client HELO|EHLO.
_SMTP_SERVER = re.compile(rb"[ \t\r\n]*220[ \t\r\n-]")
_SMTP_CLIENT = re.compile(_LINE + rb"(?i:HELO|EHLO)[ \t]")
# scripts/base/protocols/ftp/dpd.sig: client "USER " at a line start; server greeting 120|220 and,
# after USER, 230|331 (RFC 959 §4.2). The second reply may lie beyond a cut; a greeting is needed.
_FTP_SERVER = re.compile(rb"[\r\n ]*(120|220)[^0-9]")
_FTP_CLIENT = re.compile(_LINE + rb"(?i:USER) ")
_FTP_LOGIN_REPLY = re.compile(rb"[\r\n] *(230|331|332|530|500|501|421)[^0-9]")
_SMTP_WORD, _FTP_WORD = re.compile(rb"(?i)SMTP"), re.compile(rb"(?i)FTP")  # "vsFTPd", "ESMTP"


def _greeting(resp: bytes, server: re.Pattern) -> bytes | None:
    if not server.match(resp):
        return None
    return _first_line(resp)


def _rule_smtp(orig: bytes, resp: bytes, app: dict) -> bool:
    greeting = _greeting(resp, _SMTP_SERVER)
    if greeting is None:
        return False
    if orig:
        return bool(_SMTP_CLIENT.search(orig))
    return bool(_SMTP_WORD.search(greeting)) and not _FTP_WORD.search(greeting)


def _reply_rest(resp: bytes, first: bytes) -> bytes:
    """What follows the reply that opens ``resp`` with line ``first``: RFC 959 §4.2, a multi-line
    reply ("220-text" ... "220 text") ends at the line that starts with its code and a space."""
    rest = resp[len(first) :]
    if first[3:4] != b"-":
        return rest
    last = re.search(rb"[\r\n]" + re.escape(first[:3]) + rb" [^\r\n]*(?:\r?\n|\Z)", rest)
    if last is None:
        return rest if not _cut(resp) else b""  # cut inside the greeting: nothing follows
    return rest[last.end() :]


def _rule_ftp(orig: bytes, resp: bytes, app: dict) -> bool:
    greeting = _greeting(resp, _FTP_SERVER)
    if greeting is None:
        return False
    if orig:
        if not _FTP_CLIENT.search(orig):
            return False
        # Zeek wants 230/331 after the greeting; the analyzer's server side ends at the client's
        # first command (ServiceAnalyzer), so the greeting alone, one line or a whole
        # multi-line reply, is enough (flowlens's rule: Pure-FTPd greets in five lines)
        rest = resp[len(greeting) :]
        return bool(_FTP_LOGIN_REPLY.search(rest)) or not _reply_rest(resp, greeting).strip(b"\r\n")
    return bool(_FTP_WORD.search(greeting)) and not _SMTP_WORD.search(greeting)


# scripts/base/protocols/pop3/dpd.sig: server /^\+OK/, client USER|APOP|CAPA|AUTH|STLS at a line
# start (RFC 1939 §4, RFC 2449, RFC 5034, RFC 2595). With the client side empty: "+OK" and a line.
_POP3_SERVER = re.compile(rb"\+OK(?:[ \t][^\r\n]*)?\r?\n")
_POP3_CLIENT = re.compile(_LINE + rb"(?i:USER[ \t]|APOP[ \t]|CAPA|AUTH|STLS)")


def _rule_pop3(orig: bytes, resp: bytes, app: dict) -> bool:
    if not _POP3_SERVER.match(resp):
        return False
    return not orig or bool(_POP3_CLIENT.search(orig))


# IMAP: Zeek has no signature (scripts/base/protocols/imap/main.zeek registers port 143; the
# analyzer, src/analyzer/protocol/imap/imap-protocol.pac, parses "tag command"). flowlens uses the
# greeting, RFC 9051 §7.1 "* OK" / "* PREAUTH" / "* BYE", and a tagged client command (§6).
_IMAP_SERVER = re.compile(rb"\* (?i:OK|PREAUTH|BYE)[ \[][^\r\n]*\r?\n")
_IMAP_CLIENT = re.compile(
    rb"[A-Za-z0-9.]{1,32} (?i:CAPABILITY|LOGIN|AUTHENTICATE|STARTTLS|ID|NOOP|LOGOUT|ENABLE|"
    rb"SELECT|EXAMINE|LIST|COMPRESS)[ \r\n]"
)


def _rule_imap(orig: bytes, resp: bytes, app: dict) -> bool:
    if not _IMAP_SERVER.match(resp):
        return False
    return not orig or bool(_IMAP_CLIENT.match(orig))


# scripts/base/protocols/irc/dpd.sig: client NICK and USER lines (either order), server reply
# /^(|.*[\n\r])(:[^ \n\r]+ )?[0-9][0-9][0-9] / (RFC 2812 §2.3.1, §3.1.2-3.1.3). Both sides.
_IRC_NICK = re.compile(_LINE + rb"(?i:NICK) +[^\r\n]+[\r\n]")
_IRC_USER = re.compile(_LINE + rb"(?i:USER) +[^\r\n]+[\r\n]")
_IRC_SERVER = re.compile(_LINE + rb"(?::[^ \r\n]+ )?(?:[0-9]{3}|NOTICE) ")


def _rule_irc(orig: bytes, resp: bytes, app: dict) -> bool:
    return bool(_IRC_NICK.search(orig) and _IRC_USER.search(orig) and _IRC_SERVER.match(resp))


# ---- DNS over TCP ----------------------------------------------------------------------------
# Zeek attaches its DNS analyzer by port (scripts/base/protocols/dns/main.zeek, 53/tcp), no
# signature. flowlens parses the first message: RFC 1035 §4.2.2 (two-byte length prefix), §4.1.1
# header, §4.1.2 question with a valid name (§3.1: labels <= 63, name <= 255, no compression in
# the first question). Query: QR 0, one question, no answers; reply: QR 1, same ID and question.
def _dns_message(data: bytes) -> tuple[int, int, bytes] | None:
    """(id, flags, question bytes) of the first length-prefixed message, or None."""
    if len(data) < 2 + 12 + 5:
        return None
    length = struct.unpack_from(">H", data)[0]
    if length < 12 + 5 or (length + 2 > len(data) and not _cut(data)):
        return None
    ident, flags, qd, an, ns, ar = struct.unpack_from(">6H", data, 2)
    opcode = (flags >> 11) & 0xF
    if qd != 1 or opcode not in (0, 2, 4, 5) or flags & 0x0040:
        return None  # 0x0040 is the one Z bit left (RFC 4035 §3.2 made the others AD and CD)
    if not flags & 0x8000 and (an or ns and opcode != 5):
        return None
    if ar > 8 or an > 512 or ns > 512:
        return None
    at, end, total = 14, min(len(data), 2 + length), 0
    while True:
        if at >= end:
            return None
        label = data[at]
        if label == 0:
            break
        if label > 63:
            return None
        total += label + 1
        if total > 255 or at + 1 + label > end:
            return None
        at += 1 + label
    if at + 5 > end:
        return None
    qtype, qclass = struct.unpack_from(">HH", data, at + 1)
    if qtype == 0 or qclass not in (1, 3, 4, 254, 255) and not 0x8000 & qclass:
        return None
    return ident, flags, data[14 : at + 5]


def _rule_dns(orig: bytes, resp: bytes, app: dict) -> bool:
    query, reply = _dns_message(orig), _dns_message(resp)
    if query and query[1] & 0x8000:
        query = None
    if reply and not reply[1] & 0x8000:
        reply = None
    if query and reply:
        return query[0] == reply[0] and query[2] == reply[2]
    return bool((query and not resp) or (reply and not orig))


# ---- Redis (RESP) ----------------------------------------------------------------------------
# scripts/base/protocols/redis/dpd.sig: server /^([-+_,].*\r\n|[:$*#(!=%`~>][+-]?[0-9]+(\.[0-9]*)?\r\n)/
# with any client line. Stricter on the client: a RESP array of bulk strings, as clients send
# commands (https://redis.io/docs/latest/develop/reference/protocol-spec/ "Sending commands").
_RESP_ARRAY = re.compile(rb"\*([1-9][0-9]{0,5})\r\n\$([0-9]{1,6})\r\n")
_RESP_SERVER = re.compile(rb"(?:[-+_,][^\r\n]*\r\n|[:$*#(!=%`~>][+-]?[0-9]+(?:\.[0-9]*)?\r\n)")


def _resp_command(data: bytes) -> bool:
    found = _RESP_ARRAY.match(data)
    if not found:
        return False
    start, size = found.end(), int(found.group(2))
    if start + size + 2 > len(data):
        return _cut(data) and size > 0
    word = data[start : start + size]
    return data[start + size : start + size + 2] == b"\r\n" and word.isalpha()


def _rule_redis(orig: bytes, resp: bytes, app: dict) -> bool:
    if not _resp_command(orig):
        return False
    return not resp or bool(_RESP_SERVER.match(resp))


# ---- PostgreSQL ------------------------------------------------------------------------------
# scripts/base/protocols/postgresql/dpd.sig: SSLRequest /^\x00\x00\x00\x08\x04\xd2\x16\x2f/ answered
# /^[SN]/; StartupMessage 3.x /^....\x00\x03\x00.{0,256}user\x00/ answered by a backend message
# /^[a-zA-Z0-9]\x00\x00../. Message layout: PostgreSQL docs, "Message Formats" (StartupMessage,
# SSLRequest 80877103, GSSENCRequest 80877104). Stricter: the StartupMessage's length is sane and
# its parameters are NUL-terminated names.
_PG_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
_PG_GSS_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x30"
_PG_STARTUP = re.compile(
    rb"\x00\x00[\x00-\x27].\x00\x03\x00\x00(?:[a-z_.]{1,63}\x00[^\x00]*\x00){0,16}?user\x00"
)
_PG_BACKEND = re.compile(rb"[a-zA-Z0-9]\x00\x00..", re.S)


def _rule_postgresql(orig: bytes, resp: bytes, app: dict) -> bool:
    if orig.startswith((_PG_SSL_REQUEST, _PG_GSS_REQUEST)):
        if resp and resp[:1] not in (b"S", b"N", b"G"):
            return False
        app.update(tls_client_hello(orig[8:]) or {})  # after "S" the client starts TLS
        return True
    found = _PG_STARTUP.match(orig)
    if not found or struct.unpack_from(">I", orig)[0] < found.end():
        return False
    return not resp or bool(_PG_BACKEND.match(resp))


# ---- MySQL -----------------------------------------------------------------------------------
# Zeek attaches its MySQL analyzer by port (scripts/base/protocols/mysql/main.zeek, 3306/tcp). The
# server speaks first: src/analyzer/protocol/mysql/mysql-protocol.pac Initial_Handshake_Packet,
# Handshake_v10 (MySQL docs "Protocol::HandshakeV10"): 3-byte little-endian length, sequence id 0,
# protocol version 10, NUL-terminated server version, connection id (4), auth data (8), filler 0.
_MYSQL_GREETING = re.compile(rb"(...)\x00\x0a([\x20-\x7e]{1,64})\x00.{12}\x00", re.S)


def _rule_mysql(orig: bytes, resp: bytes, app: dict) -> bool:
    found = _MYSQL_GREETING.match(resp)
    if not found:
        return False
    length = int.from_bytes(found.group(1), "little")
    if length + 4 < found.end() or length > 1024 or not found.group(2)[:1].isdigit():
        return False
    # The client answers with its Handshake Response, sequence id 1.
    if orig and not (len(orig) >= 4 and orig[3] == 1):
        return False
    app["mysql_server_version"] = _text(found.group(2))
    return True


# ---- RDP -------------------------------------------------------------------------------------
# scripts/base/protocols/rdp/dpd.sig: client "Cookie: mstshash=" (or MCS "Duca" with channel
# names), server /(.{5}\xd0|.*McDn)/ (X.224 Connection Confirm). Stricter on the client: TPKT
# (RFC 1006 §6: version 3, reserved 0, length) carrying an X.224 Connection Request (ITU-T X.224
# §13.3, code 0xE0) with the length indicator matching, then a cookie, a routing token or an
# RDP_NEG_REQ (MS-RDPBCGR 2.2.1.1.1: type 1, length 8); a bare X.224 CR is also ISO-TSAP (S7).
def _rule_rdp(orig: bytes, resp: bytes, app: dict) -> bool:
    if len(orig) < 11 or orig[0] != 3 or orig[1] != 0 or orig[5] != 0xE0:
        return False
    tpkt_len = struct.unpack_from(">H", orig, 2)[0]
    if orig[4] != tpkt_len - 5 or (tpkt_len > len(orig) and not _cut(orig)):
        return False
    rest = orig[11:tpkt_len]
    negotiate = rest[-8:]
    if not (
        rest.startswith((b"Cookie: mstshash=", b"Cookie: msts="))
        or (len(negotiate) == 8 and negotiate[0] == 1 and negotiate[2:4] == b"\x08\x00")
    ):
        return False
    if not resp:
        return True
    return len(resp) >= 6 and resp[0] == 3 and resp[1] == 0 and resp[5] == 0xD0


# ---- SMB -------------------------------------------------------------------------------------
# scripts/base/protocols/smb/dpd.sig: /^....[\xfe\xff]SMB/ on either side. Stricter: the four
# bytes are an RFC 1002 §4.3.1 session message header (type 0, 17-bit length; MS-SMB2 2.1 uses a
# 24-bit length for direct TCP) at least as long as an SMB header (32/64 bytes).
_SMB = re.compile(rb"\x00(...)([\xfe\xff])SMB", re.S)


def _smb(data: bytes) -> bool:
    found = _SMB.match(data)
    if not found:
        return False
    return int.from_bytes(found.group(1), "big") >= (64 if found.group(2) == b"\xfe" else 32)


def _rule_smb(orig: bytes, resp: bytes, app: dict) -> bool:
    return (_smb(orig) or _smb(resp)) and (_smb(orig) or not orig) and (_smb(resp) or not resp)


# ---- LDAP, NTLM --------------------------------------------------------------------------------
# scripts/base/protocols/ldap/dpd.sig: client /^\x30.\x02\x01.\x60/ (a BindRequest with short BER
# lengths), server /^\x30/; Zeek also attaches LDAP to 389/tcp by port (ldap/main.zeek), which is
# how it names clients that use long-form lengths (Windows: 30 84 00 00 00 4b ...). flowlens parses
# the LDAPMessage envelope instead (RFC 4511 §4.1.1, BER per X.690 §8.1.3): SEQUENCE, a definite
# length, messageID INTEGER of 1-4 bytes, then a protocolOp [APPLICATION n] request tag (client)
# or response tag (server). Zeek's service name is "ldap_tcp".
_LDAP_REQUESTS = {0x60, 0x42, 0x63, 0x66, 0x68, 0x4A, 0x6C, 0x6E, 0x50, 0x77}
_LDAP_RESPONSES = {0x61, 0x64, 0x65, 0x73, 0x67, 0x69, 0x6B, 0x6D, 0x6F, 0x78, 0x79}


def _ldap_op(data: bytes) -> int | None:
    if len(data) < 7 or data[0] != 0x30:
        return None
    at = 1
    if data[at] & 0x80:
        width = data[at] & 0x7F
        if not 1 <= width <= 4:
            return None
        at += 1 + width
    else:
        at += 1
    if at + 2 > len(data) or data[at] != 0x02 or not 1 <= data[at + 1] <= 4:
        return None
    at += 2 + data[at + 1]
    return data[at] if at < len(data) else None


def _rule_ldap(orig: bytes, resp: bytes, app: dict) -> bool:
    request, response = _ldap_op(orig), _ldap_op(resp)
    client = request in _LDAP_REQUESTS
    server = response in _LDAP_RESPONSES
    return (client or server) and (client or not orig) and (server or not resp)


# NTLM (Zeek: "ntlm", named when its GSSAPI analyzer finds NTLMSSP inside LDAP, SMB, DCE-RPC):
# MS-NLMP 2.2.1 messages open with "NTLMSSP\0" and a 32-bit message type (1 NEGOTIATE,
# 2 CHALLENGE, 3 AUTHENTICATE); found anywhere in the first bytes, raw (not base64 in HTTP).
_NTLM = re.compile(rb"NTLMSSP\x00[\x01-\x03]\x00\x00\x00")


def _rule_ntlm(orig: bytes, resp: bytes, app: dict) -> bool:
    return bool(_NTLM.search(orig) or _NTLM.search(resp))


#: The rules, in the order their names are listed when several match.
RULES: tuple[tuple[str, Rule], ...] = (
    ("ssl", _rule_ssl),
    ("http", _rule_http),
    ("ssh", _rule_ssh),
    ("smtp", _rule_smtp),
    ("ftp", _rule_ftp),
    ("pop3", _rule_pop3),
    ("imap", _rule_imap),
    ("irc", _rule_irc),
    ("dns", _rule_dns),
    ("redis", _rule_redis),
    ("postgresql", _rule_postgresql),
    ("mysql", _rule_mysql),
    ("rdp", _rule_rdp),
    ("smb", _rule_smb),
    ("ldap_tcp", _rule_ldap),
    ("ntlm", _rule_ntlm),
)
