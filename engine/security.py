"""CurveZMQ keys: anything bound beyond loopback must be encrypted and authenticated.

`sensorfuse keys generate DIR` writes a server and a client key pair (ZeroMQ's
certificate files); existing pairs are replaced only with `--force`. Publishers act as
CURVE servers; subscribers must hold the server's public key, so a peer without it cannot
complete the handshake and receives nothing.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from sensorfuse.engine import files
from sensorfuse.engine.errors import SecurityError, SensorfuseError, StartupError, UsageError


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes
    #: CURVE on loopback tcp too: a graph placed by Ray (docs/cluster.md) encrypts every tcp
    #: hop alike, so a run on one machine's simulated cluster is the multi-host path
    on_loopback: bool = False

    @classmethod
    def generate(cls, *, on_loopback: bool = False) -> CurveKeys:
        """Fresh pairs in memory (never on disk): the Ray driver's, handed to its nodes."""
        spub, ssec = zmq.curve_keypair()
        cpub, csec = zmq.curve_keypair()
        return cls(spub, ssec, cpub, csec, on_loopback)

    def to_text(self) -> dict[str, str]:
        """The Z85 keys as text (what a node reads from its stdin under Ray)."""
        return {k: getattr(self, k).decode("ascii") for k in KEY_FIELDS}

    @classmethod
    def from_text(cls, text: dict[str, str], *, on_loopback: bool = False) -> CurveKeys:
        try:
            return cls(*(text[k].encode("ascii") for k in KEY_FIELDS), on_loopback)
        except (KeyError, AttributeError, UnicodeEncodeError) as exc:
            raise StartupError(f"CurveZMQ keys handed to the node are incomplete: {exc}") from None

    @classmethod
    def load(cls, keys_dir: str | os.PathLike[str]) -> CurveKeys:
        d = Path(keys_dir)
        try:
            spub, ssec = zmq.auth.load_certificate(d / "server.key_secret")
            cpub, csec = zmq.auth.load_certificate(d / "client.key_secret")
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot load CurveZMQ keys from {d}: {exc} (create them with `sensorfuse keys generate {d}`)") from None
        if ssec is None or csec is None:
            raise StartupError(f"{d}: the .key_secret files hold no secret key")
        return cls(spub, ssec, cpub, csec)


KEY_NAMES = ("server", "client")
KEY_FIELDS = ("server_public", "server_secret", "client_public", "client_secret")


def generate(keys_dir: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path]:
    """Create server and client key pairs in `keys_dir` (mode 0700); returns the secret files.

    Existing pairs are replaced only with `force` (peers holding the old public keys stop
    connecting). The keys are written into a temporary directory beside them and renamed
    into place, so a failure leaves no half-written pair."""
    d = Path(keys_dir)
    if d.exists() and not d.is_dir():
        raise UsageError(f"keys generate: {d} is not a directory")
    existing = [f"{name}{suffix}" for name in KEY_NAMES for suffix in (".key", ".key_secret")
                if (d / f"{name}{suffix}").exists()]
    if existing and not force:
        raise UsageError(f"keys generate: {d} already holds {', '.join(existing)}; "
                         "--force replaces them (peers holding the old keys stop connecting)")
    try:
        with files.atomic_dir(d, force=True) as tmp:
            os.chmod(d, 0o700)
            for name in KEY_NAMES:
                zmq.auth.create_certificates(tmp, name)
                os.chmod(tmp / f"{name}.key_secret", 0o600)
    except OSError as exc:
        raise SensorfuseError(f"keys generate: cannot write keys into {d}: {exc.strerror or exc}") from None
    return d / "server.key_secret", d / "client.key_secret"


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// bound to a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # "*", "0.0.0.0"-like wildcards and interface names bind beyond loopback.
        return False


def _plain(endpoint: str, keys: CurveKeys | None) -> bool:
    """Whether `endpoint` goes without CURVE: loopback, unless the keys ask for tcp on it too."""
    return is_loopback(endpoint) and not (keys is not None and keys.on_loopback and endpoint.startswith("tcp://"))


def apply_server(sock: zmq.Socket, endpoint: str, keys: CurveKeys | None) -> None:
    """Configure a socket about to bind `endpoint`; refuse a non-loopback bind without keys."""
    if _plain(endpoint, keys):
        return
    if keys is None:
        raise SecurityError(
            f"refusing to bind {endpoint} beyond loopback without CurveZMQ keys: "
            "run `sensorfuse keys generate DIR` and set `security: {keys: DIR}` in the graph"
        )
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.curve_server = True


def apply_client(sock: zmq.Socket, endpoint: str, keys: CurveKeys | None) -> None:
    """Configure a socket about to connect to `endpoint` (a CURVE server when non-loopback)."""
    if keys is None or _plain(endpoint, keys):
        return
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.client_public
    sock.curve_secretkey = keys.client_secret
