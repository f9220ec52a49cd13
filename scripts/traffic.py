"""Real clients and servers for the flowlens lab, one mode per connection behaviour, loopback only.

Run inside a lab namespace (tests/netlab.py starts them): ``python scripts/traffic.py MODE PORT``.
Every mode refuses a non-loopback ``--host`` and refuses to run outside a ``flowlens-*`` network
namespace, exits by itself within ``--timeout`` seconds (exit 3 if it had to be cut short), and
prints one JSON summary as its last stdout line. Servers first print ``READY <port>``.

Servers
  http-server PORT     HTTP/1.0-ish, a thread per connection. Who closes first is chosen per
                       request by the header ``X-Flowlens-Close: server|client|server-rst`` (the
                       clients send it) or by ``--close-first``: ``server`` closes right after the
                       response (the server holds TIME_WAIT), ``client`` waits for the client's
                       FIN (the client holds TIME_WAIT), ``server-rst`` aborts with SO_LINGER 0.
  leak-server PORT     answers like http-server but never closes: after the client's FIN its
                       socket sits in CLOSE_WAIT until the process ends (stop the capture first).
  bulk-server PORT     reads a 16-byte header (bytes up, bytes down), then receives and sends
                       at the same time; closes after the client does.
  udp-echo PORT        echoes datagrams.
Clients
  http-clients PORT    --count N short connections, --keepalive K requests each, --close-first
                       client|server|server-rst, --bind-port P (SO_REUSEADDR + bind: the same
                       5-tuple again), --concurrency C threads, --rate R connections/s,
                       --retry-busy (retry EADDRNOTAVAIL instead of counting it).
  port-reuse PORT      --bind-port P: --count (2) connections from one client port, the server
                       closing first each time, so the same 5-tuple opens again at once.
  timewait-pileup PORT --count N client-closes-first connections, as fast as possible; with a
                       narrow ip_local_port_range the client runs out of ports: it records the
                       EADDRNOTAVAIL and exits 0.
  bulk PORT            --bytes B up and --down-bytes D (default B) down, both at once.
  refused PORT         --count N connects to a port with no listener (SYN answered by RST).
  abort PORT           request, response, then close with SO_LINGER 0: RST instead of FIN.
  half-close PORT      request, shutdown(SHUT_WR), then read the response until the server's FIN.
  udp-client PORT      --count N request/response datagrams; to a closed port each draws an ICMP
                       port unreachable, counted as "refused".
  udp-closed PORT      one datagram to a port with no listener; reports whether ICMP came back.

Example: python scripts/traffic.py http-clients 8080 --count 10 --close-first client
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

MAX_COUNT = 1_000_000
MAX_BYTES = 1 << 31
CHUNK = 1 << 16
CLOSE_HEADER = b"x-flowlens-close:"
CLOSE_MODES = ("server", "client", "server-rst")


class TimedOut(Exception):
    """The mode's --timeout expired."""


class Stop:
    """Set by SIGTERM/SIGINT or the deadline; servers poll it between accepts."""

    def __init__(self, duration_s: float) -> None:
        self.event = threading.Event()
        self.deadline = time.monotonic() + duration_s

    def __bool__(self) -> bool:
        return self.event.is_set() or time.monotonic() >= self.deadline


# ---- small socket helpers -----------------------------------------------------------------


class Reader:
    """Buffered reads on a socket: up to a delimiter, or an exact number of bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def until(self, delim: bytes) -> bytes | None:
        """Bytes up to and including ``delim``; None at EOF before it."""
        while delim not in self.buf:
            data = self.sock.recv(CHUNK)
            if not data:
                return None
            self.buf += data
        end = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def exactly(self, n: int) -> int:
        """Consume ``n`` bytes without keeping them; returns how many arrived before EOF."""
        got = min(n, len(self.buf))
        self.buf = self.buf[got:]
        while got < n:
            data = self.sock.recv(min(CHUNK, n - got))
            if not data:
                break
            got += len(data)
        return got

    def drain(self) -> int:
        """Read until EOF; returns the bytes discarded."""
        got, self.buf = len(self.buf), b""
        while data := self.sock.recv(CHUNK):
            got += len(data)
        return got


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def abort(sock: socket.socket) -> None:
    """Close with SO_LINGER {on, 0}: the kernel sends RST and skips FIN/TIME_WAIT."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def listener(args: argparse.Namespace, kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(family_of(args.host), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    if kind == socket.SOCK_STREAM:
        sock.listen(4096)
    sock.settimeout(0.05)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    return sock


def serve(
    args: argparse.Namespace, stop: Stop, handle: Callable[[socket.socket, dict], None]
) -> dict:
    """Accept until stopped or ``--max-conns``; one thread per connection."""
    stats: dict = Counter()
    lock = threading.Lock()
    threads: list[threading.Thread] = []

    def run(conn: socket.socket) -> None:
        local: dict = Counter()
        try:
            conn.settimeout(max(0.1, stop.deadline - time.monotonic()))
            handle(conn, local)
        except OSError as exc:
            local["errors_" + errname(exc)] += 1
        with lock:
            stats.update(local)

    with listener(args) as lsock:
        while not stop and (args.max_conns is None or stats["connections"] < args.max_conns):
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            stats["connections"] += 1
            thread = threading.Thread(target=run, args=(conn,), daemon=True)
            thread.start()
            threads = [t for t in threads if t.is_alive()] + [thread]
    for thread in threads:  # told to stop: don't wait for clients that never close
        thread.join(0.5 if stop.event.is_set() else max(0.0, stop.deadline - time.monotonic()))
    return dict(stats)


def http_response(body_bytes: int, keep: bool) -> bytes:
    head = f"HTTP/1.0 200 OK\r\nContent-Length: {body_bytes}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    return head.encode() + b"x" * body_bytes


def http_request(close_first: str, keep: bool) -> bytes:
    return (
        f"GET / HTTP/1.0\r\nHost: lab\r\nConnection: {'keep-alive' if keep else 'close'}\r\n"
        f"X-Flowlens-Close: {close_first}\r\n\r\n"
    ).encode()


def read_response(reader: Reader) -> int:
    """Read one response; returns its body length. Raises ConnectionError at early EOF."""
    head = reader.until(b"\r\n\r\n")
    if head is None:
        raise ConnectionResetError(errno.ECONNRESET, "EOF before the response")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if reader.exactly(length) < length:
        raise ConnectionResetError(errno.ECONNRESET, "EOF inside the response body")
    return length


# ---- servers ----------------------------------------------------------------------------------


def http_handler(args: argparse.Namespace, stop: Stop, leak: list[socket.socket] | None = None):
    def handle(conn: socket.socket, stats: dict) -> None:
        reader, close_first, eof = Reader(conn), args.close_first, False
        while not stop:
            request = reader.until(b"\r\n\r\n")
            if request is None:
                eof = True
                break
            lower = request.lower()
            for line in lower.split(b"\r\n"):
                if line.startswith(CLOSE_HEADER):
                    close_first = line[len(CLOSE_HEADER) :].strip().decode()
            keep = b"connection: keep-alive" in lower
            conn.sendall(http_response(args.body_bytes, keep))
            stats["requests"] += 1
            if not keep:
                break
        if leak is not None:  # the bug being modelled: the server forgets to close
            if not eof:
                reader.drain()
            stats["leaked"] += 1
            leak.append(conn)
            return
        if close_first == "server-rst":
            abort(conn)
            stats["aborted"] += 1
            return
        if close_first == "client" and not eof:
            reader.drain()
        conn.close()

    return handle


def mode_http_server(args: argparse.Namespace, stop: Stop) -> dict:
    return serve(args, stop, http_handler(args, stop))


def mode_leak_server(args: argparse.Namespace, stop: Stop) -> dict:
    leaked: list[socket.socket] = []
    stats = serve(args, stop, http_handler(args, stop, leak=leaked))
    while not stop:  # hold the CLOSE_WAIT sockets until told to stop
        time.sleep(0.05)
    return stats


def mode_bulk_server(args: argparse.Namespace, stop: Stop) -> dict:
    def handle(conn: socket.socket, stats: dict) -> None:
        reader = Reader(conn)
        head = b""
        while len(head) < 16:
            data = conn.recv(16 - len(head))
            if not data:
                return
            head += data
        up, down = struct.unpack(">QQ", head)
        sender = threading.Thread(target=send_zeros, args=(conn, down), daemon=True)
        sender.start()
        stats["bytes_received"] += reader.exactly(up)
        sender.join()
        stats["bytes_sent"] += down
        reader.drain()  # the client closes first
        conn.close()

    return serve(args, stop, handle)


def send_zeros(sock: socket.socket, n: int) -> None:
    block = b"\0" * CHUNK
    while n > 0:
        sent = sock.send(block[: min(n, CHUNK)])
        n -= sent


def mode_udp_echo(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    with listener(args, socket.SOCK_DGRAM) as sock:
        while not stop and (args.max_conns is None or stats["datagrams"] < args.max_conns):
            try:
                data, peer = sock.recvfrom(CHUNK)
            except TimeoutError:
                continue
            sock.sendto(data, peer)
            stats["datagrams"] += 1
    return dict(stats)


# ---- clients ----------------------------------------------------------------------------------


def connect(args: argparse.Namespace, bind_port: int | None = None) -> socket.socket:
    sock = socket.socket(family_of(args.host), socket.SOCK_STREAM)
    try:
        sock.settimeout(args.io_timeout)
        if bind_port is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((args.host, bind_port))
        sock.connect((args.host, args.port))
    except BaseException:
        sock.close()
        raise
    return sock


def http_connection(args: argparse.Namespace, stats: dict, ports: list[int]) -> None:
    """One connection: K requests, then close as ``--close-first`` says."""
    sock = connect(args, args.bind_port)
    ports.append(sock.getsockname()[1])
    try:
        reader = Reader(sock)
        for i in range(args.keepalive):
            keep = i < args.keepalive - 1
            sock.sendall(http_request(args.close_first, keep))
            stats["body_bytes"] += read_response(reader)
            stats["requests"] += 1
        if args.close_first != "client":
            reader.drain()  # the server closes first; our FIN follows its FIN (or its RST)
        stats["connections_ok"] += 1
    except ConnectionResetError as exc:
        stats["errors_" + errname(exc)] += 1
    finally:
        sock.close()


def mode_http_clients(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    ports: list[int] = []
    lock = threading.Lock()
    threads = max(1, min(args.concurrency, args.count))
    interval = threads / args.rate if args.rate else 0.0

    def worker(n: int) -> None:
        local: dict = Counter()
        next_at = time.monotonic()
        for _ in range(n):
            if stop:
                break
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            busy_until = time.monotonic() + 2.0
            while True:
                try:
                    http_connection(args, local, ports)
                except OSError as exc:
                    if (
                        exc.errno == errno.EADDRNOTAVAIL
                        and args.retry_busy
                        and time.monotonic() < busy_until
                    ):
                        local["retries"] += 1
                        time.sleep(0.005)
                        continue
                    local["errors_" + errname(exc)] += 1
                break
        with lock:
            stats.update(local)

    workers = [
        threading.Thread(
            target=worker, args=(args.count // threads + (i < args.count % threads),), daemon=True
        )
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {**stats, "distinct_local_ports": len(set(ports)), "local_ports": ports[:20]}


def mode_port_reuse(args: argparse.Namespace, stop: Stop) -> dict:
    if args.bind_port is None:
        raise SystemExit("port-reuse needs --bind-port")
    args.close_first, args.keepalive = "server", 1
    stats: dict = Counter()
    ports: list[int] = []
    outcomes = []
    for i in range(args.count):
        if stop:
            break
        if i and args.gap_ms:
            time.sleep(args.gap_ms / 1000)
        try:
            http_connection(args, stats, ports)
            outcomes.append("ok")
        except OSError as exc:
            outcomes.append(errname(exc))
    return {**stats, "outcomes": outcomes, "local_ports": ports}


def read_port_range() -> list[int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
        return [int(x) for x in fh.read().split()]


def mode_timewait_pileup(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    ports: list[int] = []
    first_failure = None
    args.close_first, args.keepalive, args.bind_port = "client", 1, None
    for i in range(args.count):
        if stop or stats["EADDRNOTAVAIL"] >= args.max_errors:
            break
        stats["attempts"] += 1
        try:
            http_connection(args, stats, ports)
        except OSError as exc:
            stats[errname(exc)] += 1
            if exc.errno == errno.EADDRNOTAVAIL and first_failure is None:
                first_failure = i + 1
    return {
        **stats,
        "EADDRNOTAVAIL": stats["EADDRNOTAVAIL"],
        "first_failure_at": first_failure,
        "distinct_local_ports": len(set(ports)),
        "port_range": read_port_range(),
    }


def mode_bulk(args: argparse.Namespace, stop: Stop) -> dict:
    down = args.bytes if args.down_bytes is None else args.down_bytes
    stats: dict = Counter()
    for _ in range(args.count):
        if stop:
            break
        sock = connect(args)
        try:
            sock.sendall(struct.pack(">QQ", args.bytes, down))
            sender = threading.Thread(target=send_zeros, args=(sock, args.bytes), daemon=True)
            sender.start()
            stats["bytes_received"] += Reader(sock).exactly(down)
            sender.join()
            stats["bytes_sent"] += args.bytes
        finally:
            sock.close()  # client closes first
        stats["connections_ok"] += 1
    return dict(stats)


def mode_refused(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    for _ in range(args.count):
        try:
            connect(args).close()
            stats["connected"] += 1
        except OSError as exc:
            stats["refused" if exc.errno == errno.ECONNREFUSED else errname(exc)] += 1
    return dict(stats)


def mode_abort(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    for _ in range(args.count):
        sock = connect(args)
        sock.sendall(http_request("client", keep=False))
        stats["body_bytes"] += read_response(Reader(sock))
        abort(sock)
        stats["aborted"] += 1
    return dict(stats)


def mode_half_close(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    for _ in range(args.count):
        sock = connect(args)
        try:
            # corked, the request waits in the socket until shutdown() sends it with our FIN in
            # the same segment (tcp(7) TCP_CORK): the FIN is on the wire before the server can
            # answer, however the two processes are scheduled
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.sendall(http_request("server", keep=False))
            sock.shutdown(socket.SHUT_WR)
            reader = Reader(sock)
            stats["body_bytes"] += read_response(reader)
            reader.drain()
        finally:
            sock.close()
        stats["half_closed"] += 1
    return dict(stats)


def mode_udp_client(args: argparse.Namespace, stop: Stop) -> dict:
    stats: dict = Counter()
    with socket.socket(family_of(args.host), socket.SOCK_DGRAM) as sock:
        sock.connect((args.host, args.port))  # connected, so ICMP errors surface as ECONNREFUSED
        sock.settimeout(args.io_timeout)
        for i in range(args.count):
            if stop:
                break
            payload = f"flowlens {i}".encode().ljust(args.size, b".")
            try:
                sock.send(payload)
                stats["sent"] += 1
                if sock.recv(CHUNK) == payload:
                    stats["received"] += 1
            except ConnectionRefusedError:
                stats["refused"] += 1
            except TimeoutError:
                stats["lost"] += 1
    return dict(stats)


def mode_udp_closed(args: argparse.Namespace, stop: Stop) -> dict:
    args.count = 1
    stats = mode_udp_client(args, stop)
    return {**stats, "icmp_unreachable": stats.get("refused", 0) == 1}


# ---- command line -----------------------------------------------------------------------------

SERVERS = {
    "http-server": mode_http_server,
    "leak-server": mode_leak_server,
    "bulk-server": mode_bulk_server,
    "udp-echo": mode_udp_echo,
}
CLIENTS = {
    "http-clients": mode_http_clients,
    "port-reuse": mode_port_reuse,
    "timewait-pileup": mode_timewait_pileup,
    "bulk": mode_bulk,
    "refused": mode_refused,
    "abort": mode_abort,
    "half-close": mode_half_close,
    "udp-client": mode_udp_client,
    "udp-closed": mode_udp_closed,
}


def bounded(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 0 and {limit}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Example: python scripts/traffic.py http-server 8080 --close-first client",
    )
    parser.add_argument("mode", choices=[*SERVERS, *CLIENTS])
    parser.add_argument("port", type=bounded(65535))
    parser.add_argument(
        "--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1; ::1 for IPv6)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="hard limit in seconds (default 30)"
    )
    parser.add_argument(
        "--io-timeout", type=float, default=5.0, help="per socket operation, seconds"
    )
    parser.add_argument("--count", type=bounded(MAX_COUNT), default=1)
    parser.add_argument("--close-first", choices=CLOSE_MODES, default="server")
    parser.add_argument(
        "--keepalive", type=bounded(10_000), default=1, help="requests per connection"
    )
    parser.add_argument("--bind-port", type=bounded(65535), default=None)
    parser.add_argument("--concurrency", type=bounded(256), default=1)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="connections per second, 0 = flat out"
    )
    parser.add_argument(
        "--retry-busy", action="store_true", help="retry EADDRNOTAVAIL for up to 2 s"
    )
    parser.add_argument(
        "--max-errors", type=bounded(MAX_COUNT), default=1, help="timewait-pileup: stop after"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="port-reuse: pause between connections"
    )
    parser.add_argument("--bytes", type=bounded(MAX_BYTES), default=1 << 20, help="bulk: bytes up")
    parser.add_argument(
        "--down-bytes", type=bounded(MAX_BYTES), default=None, help="bulk: bytes down (--bytes)"
    )
    parser.add_argument(
        "--body-bytes", type=bounded(1 << 24), default=64, help="servers: response body size"
    )
    parser.add_argument("--size", type=bounded(65000), default=32, help="udp: datagram size")
    parser.add_argument(
        "--max-conns", type=bounded(MAX_COUNT), default=None, help="servers: exit after this many"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="servers: run this long (default --timeout)"
    )
    return parser


def lab_namespace() -> str | None:
    """The name of the ``flowlens-*`` namespace (``ip netns add``) this process runs in, or None.

    A positive check: "not init's namespace" cannot be told here (root may not read
    /proc/1/ns/net), and any other named namespace might not be a lab's.
    """
    try:
        here = os.stat("/proc/self/ns/net")
        for name in os.listdir("/run/netns"):
            if name.startswith("flowlens-"):
                there = os.stat(os.path.join("/run/netns", name))
                if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
                    return name
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            parser.error(f"--host {args.host} is not a loopback address")
    except ValueError:
        parser.error(f"--host {args.host} is not an IP address")
    if lab_namespace() is None:
        print(
            "traffic.py: refusing to run outside a flowlens-* lab namespace; run it in a lab "
            "(tests/netlab.py) or under 'ip netns exec flowlens-...'",
            file=sys.stderr,
        )
        return 2
    server = args.mode in SERVERS
    duration = args.timeout if args.duration is None else min(args.duration, args.timeout)
    stop = Stop(duration if server else args.timeout)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.event.set())

    def on_alarm(*_):
        raise TimedOut

    signal.signal(signal.SIGALRM, on_alarm)
    # Servers end at their deadline by themselves; the alarm is the backstop for a stuck thread.
    signal.setitimer(signal.ITIMER_REAL, args.timeout + (2.0 if server else 0.0))
    started = time.monotonic()
    code = 0
    try:
        result = (SERVERS.get(args.mode) or CLIENTS[args.mode])(args, stop)
    except TimedOut:
        result, code = {"error": "timeout"}, 3
    except OSError as exc:
        result, code = {"error": errname(exc), "message": str(exc)}, 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    result = {"mode": args.mode, **result, "elapsed_s": round(time.monotonic() - started, 4)}
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
