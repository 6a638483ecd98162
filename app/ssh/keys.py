"""OpenSSH public keys: parse and check one `authorized_keys`-style line, compute its fingerprint.

Standard library only, so the coordinator can validate keys without the SSH server's imports.
The checks are structural (type, base64, the blob's own fields, RSA size): a key that passes is
one `ssh` and `sshd` will accept; a typo, a private key or a truncated paste is refused with a
sentence that says which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

MIN_RSA_BITS = 2048
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
}
KEY_TYPES = (
    "ssh-ed25519",
    *ECDSA_CURVES,
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
"""User names that may own a key: they end up inside a forced command, so no quoting games."""


class BadKey(ValueError):
    """The text is not an acceptable public key; the message says why."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    data: str  # the base64 blob, as written in authorized_keys
    comment: str

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.data)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def line(self) -> str:
        """`TYPE BASE64`, without the comment: what goes into authorized_keys."""
        return f"{self.key_type} {self.data}"


def fingerprint(blob: bytes) -> str:
    """The SHA256 fingerprint exactly as `ssh-keygen -l` and sshd's log print it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(text: str, where: str = "the key") -> PublicKey:
    """One public key from the text of a `.pub` file; refuse anything else with a reason."""
    if "PRIVATE KEY" in text:
        raise BadKey(f"{where} is a private key; give the .pub file next to it")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise BadKey(f"{where} is empty")
    if len(lines) > 1:
        raise BadKey(f"{where} holds {len(lines)} keys; give one key at a time")
    parts = lines[0].split(None, 2)
    if parts[0] not in KEY_TYPES:
        if any(p in KEY_TYPES for p in parts[1:2]) or "=" in parts[0] or "," in parts[0]:
            raise BadKey(f"{where} starts with options ({parts[0][:40]!r}); give the bare key")
        if parts[0].startswith("-----BEGIN"):
            raise BadKey(f"{where} is in PEM format; convert it with ssh-keygen -i -f FILE")
        raise BadKey(f"{where}: key type {parts[0][:40]!r} is not one of {', '.join(KEY_TYPES)}")
    if len(parts) < 2:
        raise BadKey(f"{where}: the {parts[0]} key has no key data after its type")
    key_type, data = parts[0], parts[1]
    comment = parts[2] if len(parts) == 3 else ""
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(f"{where}: the key data is not valid base64 (truncated or mistyped?)"
                        ) from None
    _check_blob(key_type, blob, where)
    comment = "".join(ch for ch in comment if ch.isprintable())[:200]
    return PublicKey(key_type, base64.b64encode(blob).decode(), comment)


def _check_blob(key_type: str, blob: bytes, where: str) -> None:
    reader = _Reader(blob, where)
    inner = reader.string()
    if inner != key_type.encode():
        raise BadKey(f"{where}: the key says {key_type} but its data is a "
                        f"{inner.decode(errors='replace')[:40]!r} key")
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        if len(reader.string()) != 32:
            raise BadKey(f"{where}: an ed25519 key must be 32 bytes")
    elif key_type == "ssh-rsa":
        exponent, modulus = reader.string(), reader.string()
        if not exponent or not modulus:
            raise BadKey(f"{where}: the RSA key has no exponent or modulus")
        bits = int.from_bytes(modulus, "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise BadKey(f"{where}: the RSA key has {bits} bits; at least {MIN_RSA_BITS}")
    else:  # ECDSA, plain or security-key
        curve = reader.string().decode(errors="replace")
        expected = ECDSA_CURVES.get(key_type, "nistp256")
        if curve != expected:
            raise BadKey(f"{where}: the {key_type} key names curve {curve[:20]!r}")
        point = reader.string()
        if not point or point[0] != 4:
            raise BadKey(f"{where}: the ECDSA key's point is not in uncompressed form")
    if key_type.startswith("sk-"):
        reader.string()  # application, usually "ssh:"
    if not reader.done():
        raise BadKey(f"{where}: the key data has trailing bytes (two keys pasted together?)")


class _Reader:
    """SSH wire format: uint32 length, then that many bytes."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise BadKey(f"{self.where}: the key data is cut short")
        (n,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        if self.pos + n > len(self.data):
            raise BadKey(f"{self.where}: the key data is cut short")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def done(self) -> bool:
        return self.pos == len(self.data)
