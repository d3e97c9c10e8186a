"""Exceptions with a meaning for the supervisor and the CLI."""

from __future__ import annotations


class SensorfuseError(Exception):
    """A runtime failure with a message meant for the user (one line, no traceback)."""


class UsageError(SensorfuseError):
    """The user asked for something malformed (bad graph, bad flag): CLI exit code 2."""


class StartupError(SensorfuseError):
    """A node cannot start and retrying will not help (missing model file, bad params,
    refused insecure bind). The node exits with `EXIT_STARTUP` and is not restarted."""


class SecurityError(StartupError):
    """A non-loopback bind without CurveZMQ keys."""


#: Node process exit codes the supervisor understands.
EXIT_OK = 0
EXIT_CRASH = 1
EXIT_STARTUP = 3
