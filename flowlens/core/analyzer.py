# cython: annotation_typing=False
# (C types come from analyzer.pxd; the annotations here are documentation only)
"""The analyzer interface: per-connection analyzers with a lifecycle, needs and dependencies.

An analyzer is told when a connection starts, sees each of its packets, is told when the roles
flip and when the connection ends, and gives its cross-connection result when the capture ends
(the shapes of nfstream's ``NFPlugin``: ``on_init``/``on_update``/``on_expire``, and of Zeek's
analyzer tree, where ``FlipRoles()`` is passed down to every child)::

    class SynCounter(Analyzer):
        needs = Needs.NONE            # what the decoder must provide (see Needs)
        requires = ()                 # analyzers whose results this one reads

        def on_start(self, conn, pkt):
            return [0] if conn.tcp is not None else None   # this connection's state

        def on_packet(self, conn, pkt, from_orig):
            if pkt.flags & TH_SYN:
                self.state_of(conn)[0] += 1

        def finish(self, end_ns=None):
            return "done"

    counter = SynCounter()
    result = analyze("capture.pcap", analyzers=[counter])
    counter.state_of(result.connections[0])   # -> [1]
    result.results[counter]                   # -> "done"

Hooks, called by `ConnectionTable` (and `finish` by `Pipeline`), each in dependency order
(an analyzer's dependencies run before it in every hook):

``on_start(conn, pkt) -> state``
    The connection's first packet, after the table applied it and before any analyzer's
    ``on_packet`` for it. Returns the analyzer's per-connection state (any object; the table keeps
    it in the connection's slot for this analyzer), or None: then the analyzer sees none of the
    connection's packets and no flip (its ``on_end`` is still called).
``on_packet(conn, pkt, from_orig)``
    Every packet of a connection whose state is not None, the first one included, after the table
    applied it (``conn.tcp.state`` is the state *after* the packet) and after the analyzer's
    dependencies saw it. `from_orig`: the originator sent it.
``on_flip(conn)``
    The table swapped originator and responder of a started connection (Zeek's ``FlipRoles``: a
    SYN/ACK seen first, then the SYN): every per-side fact the state holds moves with its
    endpoint. Called before the packet that caused the flip is shown. A flip decided on the first
    packet happens before ``on_start``, so no analyzer hears of it.
``on_end(conn)``
    The connection finished, on every exit path of the table (closed and lingered, idle, reused
    by a new connection, TIME_WAIT held to its end, capture end): its record is final
    (``end_ts_ns``, ``closed_by``, end states), and the pipeline hands it out after this.
``finish(end_ns=None) -> result``
    After the last ``on_end``: cross-connection results (the anomaly findings, say). `end_ns` is
    the capture's last timestamp (None when unknown). `Pipeline.results[analyzer]` keeps what it
    returns.

Per-connection state is a typed object per analyzer, not a string-keyed dict: the table gives
each analyzer a `slot` and each connection a small list of states (`Connection.states`), and
each analyzer's public accessor `state_of(conn)` (typed in subclasses: `TcpAnalyzer.state_of`
returns a `TcpaState`) is what reports and other analyzers read. The state stays on the
connection after ``on_end`` and is freed with it.

Needs (`needs`, a `Needs` flag set) say what the decoder must copy out of each packet; the
pipeline configures its `Decoder` from the union of every analyzer's needs, so a run pays only
for what some analyzer reads.

Dependencies (`requires`, a tuple of `Analyzer` classes or instances) are resolved by `resolve`
(the table does it): a class is satisfied by an instance of that class among the analyzers given,
else by a new one made without arguments; the dependencies come first in the resolved order, and
`bind(deps)` hands each analyzer its dependencies' instances, in the order of its `requires`.

Compiled by Cython (pure-Python mode): analyzer.pxd declares the hooks `cpdef`, so the compiled
table calls a compiled analyzer's hooks as C calls; a Python subclass overrides them as usual.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import cython

from .decode import Packet

__all__ = ["Analyzer", "Needs", "resolve", "needs_of"]


class Needs(enum.IntFlag):
    """What an analyzer needs the decoder to provide, beyond the header fields every packet has."""

    NONE = 0
    #: the TCP options of SYN segments (`pkt.raw_options`, `pkt.options`): always copied out,
    #: since the table itself reads none and copying SYNs' costs next to nothing
    SYN_OPTIONS = 1
    #: the TCP options of every segment (otherwise `pkt.raw_options` is None after the handshake)
    ALL_OPTIONS = 2
    #: every TCP segment's RFC 7323 timestamps as numbers (`pkt.tsval`, `pkt.tsecr`)
    TIMESTAMPS = 4
    #: the first payload bytes of every TCP/UDP packet (`pkt.payload`: at most
    #: pipeline.PAYLOAD_BYTES of them, None without payload) for service identification
    PAYLOAD = 8


class Analyzer:
    """Base of every per-connection analyzer; see the module docstring for the protocol."""

    #: what the decoder must provide (see Needs)
    needs = Needs.NONE
    #: analyzers whose results this one reads: classes (any instance of it will do) or instances
    requires = ()

    def __init__(self) -> None:
        self.slot = -1  # set by the table (resolve): the index of this analyzer's states

    # ---------------------------------------------------------------- state
    def state_of(self, conn):
        """This analyzer's state for `conn` (what its `on_start` returned), or None."""
        states = conn.states
        if states is None or self.slot < 0 or self.slot >= len(states):
            return None
        return states[self.slot]

    def dependencies(self) -> tuple:
        """What this analyzer requires (by default its class's `requires`)."""
        return self.requires

    def bind(self, deps: tuple) -> None:
        """Receive the instances of `dependencies()`, in that order (before the first packet)."""

    # ---------------------------------------------------------------- hooks
    # (C methods when compiled: `cpdef` in analyzer.pxd; subclasses override them as usual)
    def on_start(self, conn, pkt: Packet):
        """The connection's first packet: return this analyzer's state for it, or None."""
        return None

    def on_packet(self, conn, pkt: Packet, from_orig: cython.bint) -> None:
        """One packet of a connection whose state is not None."""

    def on_flip(self, conn) -> None:
        """The table swapped originator and responder of `conn`."""

    def on_end(self, conn) -> None:
        """`conn` finished; its record is final."""

    def finish(self, end_ns=None):
        """The capture ended at `end_ns` (ns, or None): the cross-connection result, or None."""
        return None


def resolve(analyzers: Iterable[Analyzer]) -> list[Analyzer]:
    """`analyzers` with their missing dependencies added, dependencies first, slots assigned
    and each one bound to its dependencies' instances. Raises TypeError for something that is
    not an Analyzer, ValueError for a dependency cycle."""
    given = list(analyzers)
    for a in given:
        if not isinstance(a, Analyzer):
            raise TypeError(f"{a!r} is not a flowlens Analyzer")
    order: list[Analyzer] = []
    visiting: list[Analyzer] = []
    made: dict[type, Analyzer] = {}

    def instance(dep) -> Analyzer:
        if isinstance(dep, Analyzer):
            return dep
        if not (isinstance(dep, type) and issubclass(dep, Analyzer)):
            raise TypeError(f"{dep!r} is not an Analyzer class or instance")
        for a in given + order:
            if type(a) is dep:
                return a
        for a in given + order:
            if isinstance(a, dep):
                return a
        if dep not in made:
            made[dep] = dep()
        return made[dep]

    def visit(a: Analyzer) -> None:
        if any(a is o for o in order):
            return
        if any(a is v for v in visiting):
            raise ValueError(f"analyzer dependency cycle through {type(a).__name__}")
        visiting.append(a)
        deps = tuple(instance(d) for d in a.dependencies())
        for d in deps:
            visit(d)
        visiting.pop()
        a.bind(deps)
        order.append(a)

    for a in given:
        visit(a)
    for i, a in enumerate(order):
        a.slot = i
    return order


def needs_of(analyzers: Sequence[Analyzer]) -> Needs:
    """The union of the analyzers' needs."""
    out = Needs.NONE
    for a in analyzers:
        out |= Needs(a.needs)
    return out
