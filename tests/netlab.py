"""A throwaway network namespace where real programs talk over loopback while tcpdump records them.

Network rule of this workplace: lab traffic goes only to loopback addresses (127.0.0.1, ::1)
inside a namespace the lab created itself. ``Lab`` makes a fresh namespace
(``flowlens-<pid>-<hex>``), brings its ``lo`` up, applies per-namespace sysctls (ephemeral port
range, TIME_WAIT reuse) and an optional path delay, runs programs inside it, and always deletes it
(processes killed, namespace removed) on the way out, even on failure.

    with Lab(delay_ms=20, port_range=(40000, 40009)) as lab:
        server = lab.start_traffic("http-server", 8080)
        with lab.capture(tmp_path / "http.pcap") as cap:
            lab.traffic("http-clients", 8080, "--count", 5)
        server.stop()
    cap.packets_in_file  # checked against tcpdump's own count

Delay: ``tc qdisc ... netem delay`` when the kernel has netem; otherwise (this project's machines
are built without CONFIG_NET_SCH_NETEM) an iptables NFQUEUE rule on OUTPUT and a small
pure-Python netlink program (``python tests/netlab.py nfqueue-delay``) that holds each packet for
the delay before accepting it. Both delay every packet once, before tcpdump on ``lo`` sees it, so
in the capture SYN->SYN/ACK is one delay and SYN->ACK (the handshake RTT) is two.

tcpdump facts this module relies on (tcpdump 4.99.3 / libpcap 1.10.3, checked by hand):
- without ``--immediate-mode`` libpcap uses TPACKET_V3 blocks and SIGINT discards the packets of
  an unfinished block (1658 of 2118 packets written); with it, all of them;
- the default 2 MiB ring drops packets on lo (frames sized for its 64 KiB MTU) at a few thousand
  packets/s, hence ``-B`` 32 MiB by default (64 MiB costs 0.2 s of start-up, 256 MiB 0.9 s);
- on lo the kernel's "received by filter" counts every packet twice (out and in); libpcap keeps
  only the incoming copy, so ``packets_received == 2 * packets_captured`` there;
- ``-i any`` writes LINUX_SLL2 by default; ``linktype="LINUX_SLL"`` gives cooked v1;
- TCP and UDP checksums captured on lo are "incorrect" (checksum offload: the field holds only
  the pseudo-header sum, so about 1 in 65536 is right by chance); kernel-made RSTs and ICMP
  carry real checksums. A decoder must not treat a bad checksum on lo as corruption.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAFFIC = REPO / "scripts" / "traffic.py"
NS_PREFIX = "flowlens-"
NETNS_DIR = Path("/run/netns")
# Generous: lo frames are up to 65 KiB and tcpdump -U writes one packet per syscall.
DEFAULT_BUFFER_KIB = 32768


class LabError(RuntimeError):
    """The lab could not be set up, a program in it failed, or it could not be torn down."""


class CaptureError(LabError):
    """tcpdump failed to start, dropped packets, or left a file that does not match its count."""


@dataclasses.dataclass(slots=True)
class Capture:
    """One tcpdump run; the counts are filled in when the ``capture`` block ends."""

    path: Path
    interface: str
    linktype: str = ""  # as tcpdump names it: EN10MB (lo), LINUX_SLL2, LINUX_SLL
    packets_captured: int = -1  # tcpdump's "packets captured"
    packets_received: int = -1  # kernel's "received by filter"; on lo, twice the real count
    packets_dropped: int = -1  # kernel's "dropped by kernel"; the capture fails unless 0
    packets_in_file: int = -1  # records read back from the file; equals packets_captured


@dataclasses.dataclass(slots=True)
class LabProcess:
    """A program started in the lab in the background (a server, the delayer)."""

    argv: list[str]
    popen: subprocess.Popen
    ready_line: str = ""
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, *, sig: int = signal.SIGTERM, timeout_s: float = 5.0) -> int:
        """Send ``sig``, wait up to ``timeout_s`` (then SIGKILL); returns the exit status."""
        if self.returncode is not None:
            return self.returncode
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
        try:
            out, err = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            out, err = self.popen.communicate()
        self.stdout += out or ""
        self.stderr += err or ""
        self.returncode = self.popen.returncode
        return self.returncode

    def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the program to exit by itself; SIGKILL and raise after ``timeout_s``."""
        try:
            out, err = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.stop(sig=signal.SIGKILL)
            raise LabError(f"{self.argv} still running after {timeout_s} s") from exc
        self.stdout += out or ""
        self.stderr += err or ""
        self.returncode = self.popen.returncode
        return self.returncode

    def result(self) -> dict:
        """The JSON summary that scripts/traffic.py prints as its last stdout line."""
        return _last_json(self.stdout, self.argv, self.stderr)


def _last_json(stdout: str, argv: Sequence[str], stderr: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise LabError(f"{list(argv)} printed no JSON summary; stderr: {stderr.strip()[-500:]}")


def _host(
    argv: Sequence[str], *, timeout_s: float = 10.0, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command in the caller's namespace (only ``ip`` itself runs here)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    """A fresh network namespace with ``lo`` up; a context manager that always cleans up.

    ``delay_ms`` delays every packet once on its way out (so the RTT is ``2 * delay_ms``);
    ``port_range`` sets net.ipv4.ip_local_port_range (inclusive); ``tw_reuse`` sets
    net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback only, the kernel default);
    ``sysctls`` sets any other per-namespace sysctl, e.g. {"net.ipv4.tcp_tw_reuse_delay": "100"}.
    ``delay_method`` is "auto" (netem, else nfqueue), "netem" or "nfqueue".
    """

    _delay_probe: tuple[bool, str] | None = None

    def __init__(
        self,
        *,
        delay_ms: float = 0.0,
        port_range: tuple[int, int] | None = None,
        tw_reuse: int | None = None,
        sysctls: Mapping[str, str | int] | None = None,
        delay_method: str = "auto",
    ) -> None:
        if delay_method not in ("auto", "netem", "nfqueue"):
            raise ValueError(f"delay_method must be auto, netem or nfqueue, not {delay_method!r}")
        self.delay_ms = float(delay_ms)
        self.delay_method: str | None = None  # the one actually used, once entered
        self._want_method = delay_method
        self._sysctls: dict[str, str] = {}
        if port_range is not None:
            self._sysctls["net.ipv4.ip_local_port_range"] = f"{port_range[0]} {port_range[1]}"
        if tw_reuse is not None:
            self._sysctls["net.ipv4.tcp_tw_reuse"] = str(tw_reuse)
        for key, value in (sysctls or {}).items():
            self._sysctls[key] = str(value)
        self.name = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self._procs: list[LabProcess] = []
        self._entered = False

    # ---- availability -------------------------------------------------------------------

    @staticmethod
    def require_module() -> None:
        """For a test module that needs the lab: skip the module with the reason when no lab
        can be made here, and fail under CI=true, where the lab is promised."""
        ok, why = Lab.available()
        if ok:
            return
        if os.environ.get("CI"):
            raise RuntimeError(f"the network lab is required in CI: {why}")
        import pytest

        pytest.skip(f"network lab unavailable: {why}", allow_module_level=True)

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when a lab can be made here: Linux, root, ``ip`` and ``tcpdump`` present."""
        if not sys.platform.startswith("linux"):
            return False, f"network namespaces need Linux, not {sys.platform}"
        if os.geteuid() != 0:
            return False, "network namespaces need root (euid is not 0)"
        for tool, package in (("ip", "iproute2"), ("tcpdump", "tcpdump")):
            if shutil.which(tool) is None:
                return False, f"{tool} not found (apt-get install {package})"
        if not Path("/proc/self/ns/net").exists():
            return False, "the kernel has no network namespaces (/proc/self/ns/net missing)"
        return True, ""

    @classmethod
    def delay_available(cls) -> tuple[bool, str]:
        """(True, method) if a delayed lab works here, else (False, why); probed once, cached."""
        if cls._delay_probe is None:
            ok, reason = cls.available()
            if not ok:
                cls._delay_probe = (False, reason)
            else:
                try:
                    with Lab(delay_ms=1) as lab:
                        cls._delay_probe = (True, lab.delay_method or "")
                except LabError as exc:
                    cls._delay_probe = (False, str(exc))
        return cls._delay_probe

    @staticmethod
    def reap_stale() -> list[str]:
        """Delete ``flowlens-<pid>-*`` namespaces whose creating process is gone; returns them."""
        reaped = []
        if not NETNS_DIR.is_dir():
            return reaped
        for entry in NETNS_DIR.iterdir():
            match = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)-[0-9a-f]+", entry.name)
            if match and not _pid_alive(int(match.group(1))):
                _kill_netns_pids(entry.name)
                if _host(["ip", "netns", "del", entry.name], check=False).returncode == 0:
                    reaped.append(entry.name)
        return reaped

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        ok, reason = self.available()
        if not ok:
            raise LabError(reason)
        self.reap_stale()
        _host(["ip", "netns", "add", self.name])
        self._entered = True
        try:
            _host(self.exec_argv(["ip", "link", "set", "lo", "up"]))
            for key, value in self._sysctls.items():
                self.sysctl(key, value)
            if self.delay_ms > 0:
                self._set_delay()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._teardown()
        except LabError:
            if exc is None:
                raise

    def _teardown(self) -> None:
        if not self._entered:
            return
        self._entered = False
        for proc in reversed(self._procs):
            proc.stop(timeout_s=3.0)
        _kill_netns_pids(self.name)
        _host(["ip", "netns", "del", self.name], check=False)
        if (NETNS_DIR / self.name).exists():
            raise LabError(f"namespace {self.name} survived 'ip netns del'")

    # ---- running programs -------------------------------------------------------------------

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside this lab's namespace."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 30.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the lab to completion (text output captured); killed after ``timeout_s``."""
        self._require_entered()
        full = self.exec_argv(argv)
        proc = subprocess.Popen(
            full,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input=input, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise LabError(
                f"{list(map(str, argv))} still running after {timeout_s} s; killed"
            ) from exc
        done = subprocess.CompletedProcess(full, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise LabError(f"{list(map(str, argv))} exited {proc.returncode}: {err.strip()[-800:]}")
        return done

    def start(
        self, argv: Sequence[str], *, ready_prefix: str | None = "READY", timeout_s: float = 10.0
    ) -> LabProcess:
        """Start ``argv`` in the background; with ``ready_prefix``, wait for a stdout line starting
        with it (servers print ``READY <port>`` once listening). Killed when the lab ends."""
        self._require_entered()
        argv = [str(a) for a in argv]
        popen = subprocess.Popen(
            self.exec_argv(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        proc = LabProcess(argv, popen)
        self._procs.append(proc)
        if ready_prefix is not None:
            proc.ready_line = self._await_line(proc, ready_prefix, timeout_s)
        return proc

    @staticmethod
    def _await_line(proc: LabProcess, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        stream = proc.popen.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = stream.readline()
            if not line:  # EOF: the program died before it was ready
                proc.stop()
                raise LabError(
                    f"{proc.argv} exited {proc.returncode} before '{prefix}': {proc.stderr.strip()[-800:]}"
                )
            if line.startswith(prefix):
                return line.strip()
            proc.stdout += line
        proc.stop(sig=signal.SIGKILL)
        raise LabError(
            f"{proc.argv} not ready ('{prefix}') after {timeout_s} s: {proc.stderr.strip()[-800:]}"
        )

    def traffic(
        self, mode: str, *args: object, timeout_s: float = 30.0, check: bool = True
    ) -> dict:
        """Run ``scripts/traffic.py MODE ARGS --timeout timeout_s`` and return its JSON summary."""
        argv = [sys.executable, str(TRAFFIC), mode, *map(str, args), "--timeout", str(timeout_s)]
        done = self.run(argv, timeout_s=timeout_s + 10.0, check=check)
        return _last_json(done.stdout, argv, done.stderr)

    def start_traffic(self, mode: str, *args: object, timeout_s: float = 60.0) -> LabProcess:
        """Start a server mode of ``scripts/traffic.py`` (it exits by itself after ``timeout_s``)
        and wait until it listens. ``proc.stop()`` then ``proc.result()`` give its summary."""
        argv = [sys.executable, str(TRAFFIC), mode, *map(str, args), "--timeout", str(timeout_s)]
        return self.start(argv)

    def sysctl(self, name: str, value: str | int | None = None) -> str:
        """Read, or set then read back, a sysctl of this namespace (``net.ipv4.tcp_tw_reuse``)."""
        self._require_entered()
        path = "/proc/sys/" + name.replace(".", "/")
        code = (
            "import sys\nif len(sys.argv) > 2:\n    open(sys.argv[1], 'w').write(sys.argv[2])\n"
            "print(open(sys.argv[1]).read().strip())"
        )
        argv = [sys.executable, "-c", code, path] + ([] if value is None else [str(value)])
        return self.run(argv, timeout_s=10.0).stdout.strip()

    def _require_entered(self) -> None:
        if not self._entered:
            raise LabError("use the Lab in a 'with' block first")

    # ---- delay ----------------------------------------------------------------------------

    def _set_delay(self) -> None:
        reasons = []
        if self._want_method in ("auto", "netem"):
            tc = [
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                f"{self.delay_ms}ms",
                "limit",
                "1000000",
            ]
            if shutil.which("tc") is None:
                reasons.append("tc not found (apt-get install iproute2)")
            else:
                done = _host(self.exec_argv(tc), check=False)
                if done.returncode == 0:
                    self.delay_method = "netem"
                    return
                reasons.append(
                    f"netem: {done.stderr.strip()} (kernel without CONFIG_NET_SCH_NETEM?)"
                )
        if self._want_method in ("auto", "nfqueue"):
            missing = [t for t in ("iptables", "ip6tables") if shutil.which(t) is None]
            if missing:
                reasons.append(
                    f"nfqueue: {' and '.join(missing)} not found (apt-get install iptables)"
                )
            else:
                # The delayer binds the queue first: an NFQUEUE rule without a listener drops.
                self.start(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "nfqueue-delay",
                        "--queue",
                        "0",
                        "--delay-ms",
                        str(self.delay_ms),
                    ]
                )
                for tool in ("iptables", "ip6tables"):
                    _host(
                        self.exec_argv(
                            [
                                tool,
                                "-w",
                                "-t",
                                "mangle",
                                "-A",
                                "OUTPUT",
                                "-o",
                                "lo",
                                "-j",
                                "NFQUEUE",
                                "--queue-num",
                                "0",
                            ]
                        )
                    )
                self.delay_method = "nfqueue"
                return
        raise LabError("no way to delay packets here: " + "; ".join(reasons))

    # ---- capture --------------------------------------------------------------------------

    @contextlib.contextmanager
    def capture(
        self,
        path: str | os.PathLike,
        *,
        interface: str = "lo",
        snaplen: int = 262144,
        nano: bool = False,
        linktype: str | None = None,
        bpf_filter: str | None = None,
        buffer_kib: int = DEFAULT_BUFFER_KIB,
        settle_s: float = 0.2,
        allow_drops: bool = False,
        packet_buffered: bool = True,
    ) -> Iterator[Capture]:
        """Record ``interface`` into the pcap ``path`` while the block runs.

        Yields only once tcpdump is listening. At the end, waits until the file has stopped
        growing for ``settle_s`` (plus twice the delay), stops tcpdump with SIGINT, and checks
        that the kernel dropped nothing and that the file holds exactly the packets tcpdump
        counted. ``nano`` asks for nanosecond timestamps; ``interface="any"`` gives Linux cooked
        capture (LINUX_SLL2, or ``linktype="LINUX_SLL"`` for v1); ``bpf_filter`` is tcpdump syntax.
        ``packet_buffered`` (tcpdump -U) writes each packet at once, so the file can be watched while
        it grows; turning it off saves a write() per packet when capturing flat out.
        """
        self._require_entered()
        path = Path(path).resolve()
        cap = Capture(path=path, interface=interface)
        argv = [
            "tcpdump",
            "-Z",
            "root",
            "-i",
            interface,
            "--immediate-mode",
            "-n",
            "-s",
            str(snaplen),
            "-B",
            str(buffer_kib),
            "-w",
            str(path),
        ]
        if packet_buffered:
            argv.append("-U")
        if nano:
            argv += ["--time-stamp-precision", "nano"]
        if linktype:
            argv += ["-y", linktype]
        if bpf_filter:
            argv.append(bpf_filter)
        with tempfile.TemporaryFile("w+") as errfile:

            def start() -> subprocess.Popen:
                return subprocess.Popen(
                    self.exec_argv(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errfile,
                    start_new_session=True,
                )

            popen = start()
            try:
                try:
                    cap.linktype = _await_listening(popen, errfile, timeout_s=15.0)
                except CaptureError as first:
                    # (once in a few thousand starts tcpdump never got to listening on a busy
                    # machine, two full runs in a row: start it once more, from a clean file)
                    _interrupt(popen)
                    errfile.seek(0)
                    errfile.truncate()
                    popen = start()
                    try:
                        cap.linktype = _await_listening(popen, errfile, timeout_s=15.0)
                    except CaptureError as second:
                        raise CaptureError(f"{first}; started again: {second}") from second
                yield cap
                _await_quiet(path, settle_s + 2 * self.delay_ms / 1000.0)
            finally:
                _interrupt(popen)
            errfile.seek(0)
            err = errfile.read()
        if popen.returncode != 0:
            raise CaptureError(f"tcpdump exited {popen.returncode}: {err.strip()[-800:]}")
        counts = (
            ("packets_captured", "packets captured"),
            ("packets_received", "packets received by filter"),
            ("packets_dropped", "packets dropped by kernel"),
        )
        for attr, label in counts:
            match = re.search(r"^(\d+) " + label, err, re.M)
            if match is None:
                raise CaptureError(f"tcpdump printed no '{label}' line: {err.strip()[-800:]}")
            setattr(cap, attr, int(match.group(1)))
        cap.packets_in_file = pcap_record_count(path)
        if cap.packets_dropped and not allow_drops:
            raise CaptureError(
                f"{path}: the kernel dropped {cap.packets_dropped} packets "
                "(raise buffer_kib or slow the traffic down)"
            )
        if cap.packets_in_file != cap.packets_captured:
            raise CaptureError(
                f"{path}: {cap.packets_in_file} records in the file, "
                f"tcpdump counted {cap.packets_captured}"
            )


def _await_listening(popen: subprocess.Popen, errfile, *, timeout_s: float) -> str:
    """Wait for tcpdump's "listening on" line, printed once the socket is bound and filtering."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        errfile.seek(0)
        text = errfile.read()
        match = re.search(r"listening on \S+, link-type (\S+)", text)
        if match:
            return match.group(1)
        if popen.poll() is not None:
            raise CaptureError(
                f"tcpdump exited {popen.returncode} before listening: {text.strip()[-800:]}"
            )
        time.sleep(0.01)
    _interrupt(popen)
    errfile.seek(0)
    said = errfile.read().strip()[-400:] or "nothing"
    raise CaptureError(f"tcpdump not listening after {timeout_s} s (it said: {said})")


def _await_quiet(path: Path, quiet_s: float, *, limit_s: float = 10.0) -> None:
    """Return once ``path`` has not grown for ``quiet_s`` (with -U tcpdump writes each packet at
    once; without it, in stdio-sized chunks), so that SIGINT does not discard packets still in the
    ring; gives up after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = path.stat().st_size if path.exists() else -1
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.01)


def _interrupt(popen: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGINT (tcpdump flushes, prints its counts, exits 0); SIGKILL if it hangs."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGINT)
        try:
            popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()


def _kill_netns_pids(name: str) -> None:
    """SIGKILL whatever still runs in the lab's namespace: processes the lab itself started."""
    done = _host(["ip", "netns", "pids", name], check=False)
    for word in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",  # microsecond
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",  # nanosecond
}


def pcap_record_count(path: str | os.PathLike) -> int:
    """Number of records in a classic pcap file; raises CaptureError if the last one is cut short."""
    with open(path, "rb") as fh:
        header = fh.read(24)
        if len(header) < 24 or header[:4] not in PCAP_MAGICS:
            raise CaptureError(f"{path}: not a complete pcap file header")
        endian = PCAP_MAGICS[header[:4]]
        count = 0
        while True:
            rec = fh.read(16)
            if not rec:
                return count
            if len(rec) < 16:
                raise CaptureError(f"{path}: record {count + 1} header cut short")
            incl_len = struct.unpack(endian + "IIII", rec)[2]
            data = fh.read(incl_len)
            if len(data) < incl_len:
                raise CaptureError(
                    f"{path}: record {count + 1} cut short ({len(data)} of {incl_len} bytes)"
                )
            count += 1


# ---- the NFQUEUE delayer: runs inside the lab as `python tests/netlab.py nfqueue-delay` ---------
# Netlink constants from linux/netfilter/nfnetlink_queue.h.
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_META = 1, 1
NFQA_CFG_F_GSO = 4  # queue GSO super-packets whole instead of segmenting them
NF_ACCEPT = 1
SO_RCVBUFFORCE = 33


def _nl_attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _nfq_msg(
    msg_type: int, queue: int, attrs: Sequence[bytes], flags: int = NLM_F_REQUEST, seq: int = 0
) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return (
        struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0)
        + body
    )


def nfqueue_delay(queue: int, delay_ms: float, max_s: float) -> int:
    """Hold every packet of NFQUEUE ``queue`` for ``delay_ms``, then accept it, in arrival order.

    Verdicts are batched ("accept every id up to this one"), so a packet whose notification was
    lost to a full socket buffer (ENOBUFS) is still released, never stuck. Exits after ``max_s``
    or when its parent dies.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    config = [
        [_nl_attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))],
        [
            _nl_attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
            _nl_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 1_000_000)),
            _nl_attr(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_GSO)),
            _nl_attr(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_GSO)),
        ],
    ]
    for seq, attrs in enumerate(config, 1):
        sock.send(_nfq_msg(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        reply = sock.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
        err = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
        if err:
            print(f"nfqueue config failed: {os.strerror(-err)}", file=sys.stderr)
            return 1
    print("READY nfqueue", queue, flush=True)
    sock.setblocking(False)
    delay_s = delay_ms / 1000.0
    packet_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
    pending: deque[tuple[float, int]] = deque()
    parent = os.getppid()
    end = time.monotonic() + max_s
    while time.monotonic() < end and os.getppid() == parent:
        now = time.monotonic()
        last_due = None
        while pending and pending[0][0] <= now:
            last_due = pending.popleft()[1]
        if last_due is not None:
            sock.send(
                _nfq_msg(
                    NFQNL_MSG_VERDICT_BATCH,
                    queue,
                    [_nl_attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last_due))],
                )
            )
        wait_s = pending[0][0] - now if pending else 0.2
        if not select.select([sock], [], [], max(0.0, wait_s))[0]:
            continue
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: notifications lost; the batch verdicts release them
                continue
            arrived = time.monotonic()
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if length < 16:
                    break
                if kind == packet_type:
                    attr = off + 20  # nlmsghdr (16) + nfgenmsg (4)
                    while attr + 4 <= off + length:
                        alen, atype = struct.unpack_from("=HH", data, attr)
                        if alen < 4:
                            break
                        if atype & 0x7FFF == NFQA_PACKET_HDR:
                            pending.append(
                                (arrived + delay_s, struct.unpack_from(">I", data, attr + 4)[0])
                            )
                        attr += (alen + 3) & ~3
                off += (length + 3) & ~3
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lab helpers that run inside a lab namespace.")
    sub = parser.add_subparsers(dest="command", required=True)
    delay = sub.add_parser(
        "nfqueue-delay",
        help="delay every packet of an NFQUEUE queue; "
        "example: python tests/netlab.py nfqueue-delay --queue 0 --delay-ms 20",
    )
    delay.add_argument("--queue", type=int, default=0)
    delay.add_argument("--delay-ms", type=float, required=True)
    delay.add_argument("--max-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    return nfqueue_delay(args.queue, args.delay_ms, args.max_s)


if __name__ == "__main__":
    sys.exit(_main())
