"""`sensorfuse echo STREAM` and `sensorfuse hz STREAM`: look at a live stream.

Both subscribe with `sensorfuse.client.Subscriber` (the newest run's stream by default,
`--run-dir` for another run, `--endpoint` for any protocol v1 publisher) and end at the
stream's end of stream (exit 0), on Ctrl-C (exit 0), or when the publisher is gone
(nothing, not even an idle message, for 3 idle periods or `--timeout`: one line, exit 1).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from sensorfuse.client.render import RateWindow, describe, rate_line, raw
from sensorfuse.client.subscriber import Subscriber
from sensorfuse.engine.errors import UsageError

ECHO_EXAMPLES = """examples:
  sensorfuse echo perceive/events               # the newest run's events, one line each
  sensorfuse echo cam0/frame --raw --count 5    # five headers, as JSON
  sensorfuse echo cam0/frame --endpoint tcp://127.0.0.1:5600   # an exposed stream"""
HZ_EXAMPLES = """examples:
  sensorfuse hz cam0/frame                      # a line per second, until Ctrl-C
  sensorfuse hz mic0/audio --window 50 --duration 10"""


def _command(subparsers: Any, name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help_, description=help_, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stream", help="stream name, e.g. cam0/frame, perceive/events")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="the run whose stream to read (default: the newest run)")
    where.add_argument("--endpoint", help="subscribe at this endpoint instead (tcp://HOST:PORT, ipc://PATH)")
    p.add_argument("--keys", metavar="DIR", help="CurveZMQ keys (`sensorfuse keys generate DIR`) for an endpoint "
                                                 "beyond loopback (default: the graph's)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up after S seconds with nothing at all (default: 3 idle periods; inf: never)")
    return p


def register_echo(subparsers: Any) -> None:
    p = _command(subparsers, "echo", "print a live stream, one decoded line per message", ECHO_EXAMPLES)
    p.add_argument("--raw", action="store_true", help="print each header as JSON (and the payload's frame sizes)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    p.set_defaults(func=_cmd_echo)


def register_hz(subparsers: Any) -> None:
    p = _command(subparsers, "hz", "print a live stream's rate, jitter and losses once a second", HZ_EXAMPLES)
    p.add_argument("--window", type=int, default=100, metavar="N", help="measure over the last N intervals (100)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=_cmd_hz)


def _subscribe(args: argparse.Namespace) -> Subscriber:
    _positive("--timeout", args.timeout)
    return Subscriber(args.stream, run_dir=args.run_dir, endpoint=args.endpoint, keys=args.keys, timeout=args.timeout)


def _positive(flag: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{flag} must be > 0, got {value}")


def _cmd_echo(args: argparse.Namespace) -> int:
    _positive("--count", args.count)
    shown = 0
    with _subscribe(args) as sub:
        try:
            for msg in sub:
                print(raw(msg) if args.raw else describe(msg), flush=True)
                shown += not msg.end
                if args.count and shown >= args.count:
                    break
        except KeyboardInterrupt:
            pass
        if sub.lost or sub.seq_resets or sub.malformed:
            print(f"sensorfuse: {args.stream}: {sub.received} received, lost {sub.lost}, "
                  f"producer restarts {sub.seq_resets}, malformed {sub.malformed}", file=sys.stderr)
    return 0


def _cmd_hz(args: argparse.Namespace) -> int:
    _positive("--window", args.window)
    _positive("--duration", args.duration)
    window = RateWindow(args.window)
    with _subscribe(args) as sub:
        now = time.monotonic()
        stop_at = now + args.duration if args.duration else math.inf
        next_line = now + 1.0
        new = False
        try:
            while True:
                msg = sub.recv(timeout=max(0.0, min(next_line, stop_at) - time.monotonic()))
                if msg is not None and not msg.end:
                    window.add(msg.t_recv_ns)
                    new = True
                now = time.monotonic()
                finished = (msg is not None and msg.end) or now >= stop_at
                if now >= next_line or finished:
                    print(rate_line(args.stream, window.rate(), lost=sub.lost,
                                    malformed=sum(sub.malformed.values()), new=new), flush=True)
                    new = False
                    next_line = next_line + 1.0 if next_line + 1.0 > now else now + 1.0
                if finished:
                    return 0
        except KeyboardInterrupt:
            return 0
