"""The backup key and the backup file format.

The server keeps only an X25519 *public* key, so scheduled backups need no secret on the data
disk. The private key exists only sealed: AES-256-GCM under a key derived from the admin's
passphrase with scrypt (memory-hard). Each backup is encrypted to the public key (ECIES:
ephemeral X25519, HKDF-SHA256, AES-256-GCM) and carries the sealed private key in its header,
so the passphrase alone opens it on a fresh install. The whole header is the payload's
associated data: changing any byte of a backup makes it refuse to open.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"ONASBK1\n"
VERSION = 1
SCRYPT_N = 2**17  # 128 MiB with r=8: about half a second here, costly for a guesser
SCRYPT_R = 8
SCRYPT_P = 1
PASSPHRASE_MIN = 12
PASSPHRASE_MAX = 1024
_KEY_AAD = b"orthanc-nas backup key v1"
_HKDF_INFO = b"orthanc-nas backup v1"
_RAW = serialization.Encoding.Raw


class BackupFormatError(ValueError):
    """Not a backup file of this format (or cut short)."""


class WrongPassphrase(ValueError):
    """The passphrase does not open the sealed backup key."""


class TamperedBackup(ValueError):
    """The backup does not authenticate: damaged or altered."""


@dataclass(frozen=True)
class KeyBundle:
    """The public key and the passphrase-sealed private key: safe to store anywhere."""

    public: bytes
    salt: bytes
    n: int
    r: int
    p: int
    sealed: bytes

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "public": self.public.hex(),
                "kdf": {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p,
                        "salt": self.salt.hex()},
                "sealed": self.sealed.hex()}

    @classmethod
    def from_json(cls, data: Any) -> KeyBundle:
        try:
            kdf = data["kdf"]
            if data["version"] != VERSION or kdf["name"] != "scrypt":
                raise BackupFormatError("unknown backup key version")
            bundle = cls(bytes.fromhex(data["public"]), bytes.fromhex(kdf["salt"]),
                         int(kdf["n"]), int(kdf["r"]), int(kdf["p"]),
                         bytes.fromhex(data["sealed"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BackupFormatError):
                raise
            raise BackupFormatError(f"malformed backup key: {exc}") from exc
        if len(bundle.public) != 32 or not (2**10 <= bundle.n <= 2**22):
            raise BackupFormatError("malformed backup key")
        return bundle

    def fingerprint(self) -> str:
        """A short name of the key pair, shown to admins (which passphrase opens a backup)."""
        return hashlib.sha256(self.public).hexdigest()[:16]


def check_passphrase(passphrase: str) -> None:
    if not PASSPHRASE_MIN <= len(passphrase) <= PASSPHRASE_MAX:
        raise ValueError(f"the backup passphrase must have {PASSPHRASE_MIN} to "
                         f"{PASSPHRASE_MAX} characters")


def _passphrase_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def new_key(passphrase: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
            token: Any = secrets.token_bytes) -> KeyBundle:
    """A fresh key pair, its private half sealed with the passphrase."""
    check_passphrase(passphrase)
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    raw = private.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    salt, nonce = token(16), token(12)
    sealed = nonce + AESGCM(_passphrase_key(passphrase, salt, n, r, p)).encrypt(
        nonce, raw, _KEY_AAD + public)
    return KeyBundle(public, salt, n, r, p, sealed)


def open_key(bundle: KeyBundle, passphrase: str) -> X25519PrivateKey:
    """The private key; raises WrongPassphrase."""
    key = _passphrase_key(passphrase, bundle.salt, bundle.n, bundle.r, bundle.p)
    try:
        raw = AESGCM(key).decrypt(bundle.sealed[:12], bundle.sealed[12:],
                                  _KEY_AAD + bundle.public)
    except InvalidTag as exc:
        raise WrongPassphrase("the passphrase does not open this backup key (wrong "
                              "passphrase, or the key block was altered)") from exc
    private = X25519PrivateKey.from_private_bytes(raw)
    if private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw) != bundle.public:
        raise WrongPassphrase("the sealed key does not match its public key")
    return private


def _data_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=_HKDF_INFO).derive(shared)


def seal(bundle: KeyBundle, payload: bytes, meta: dict[str, Any],
         token: Any = secrets.token_bytes) -> bytes:
    """A backup file: magic, header length, header JSON (meta, key bundle, ephemeral key,
    nonce), then the AES-256-GCM ciphertext of ``payload`` with everything before it as
    associated data."""
    ephemeral = X25519PrivateKey.generate()
    eph_public = ephemeral.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bundle.public))
    nonce = token(12)
    header = json.dumps({"meta": meta, "key": bundle.to_json(), "ephemeral": eph_public.hex(),
                         "nonce": nonce.hex(), "cipher": "AES-256-GCM"},
                        sort_keys=True).encode()
    prefix = MAGIC + struct.pack(">I", len(header)) + header
    key = _data_key(shared, eph_public, bundle.public)
    return prefix + AESGCM(key).encrypt(nonce, payload, prefix)


def read_header(blob: bytes) -> tuple[dict[str, Any], int]:
    """The header (unauthenticated until ``unseal``) and where the ciphertext starts."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise BackupFormatError("not an Orthanc NAS backup file")
    (length,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4 + length
    if length > 1 << 20 or start > len(blob):
        raise BackupFormatError("backup header cut short or malformed")
    try:
        header: dict[str, Any] = json.loads(blob[len(MAGIC) + 4:start])
    except ValueError as exc:
        raise BackupFormatError("backup header is not JSON") from exc
    if not isinstance(header, dict):
        raise BackupFormatError("backup header is not an object")
    return header, start


def unseal(blob: bytes, passphrase: str) -> tuple[dict[str, Any], bytes]:
    """(meta, payload); raises WrongPassphrase, TamperedBackup or BackupFormatError."""
    header, start = read_header(blob)
    bundle = KeyBundle.from_json(header.get("key"))
    private = open_key(bundle, passphrase)
    try:
        eph_public = bytes.fromhex(header["ephemeral"])
        nonce = bytes.fromhex(header["nonce"])
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_public))
    except (KeyError, TypeError, ValueError) as exc:
        raise TamperedBackup("the backup header was altered") from exc
    try:
        payload = AESGCM(_data_key(shared, eph_public, bundle.public)).decrypt(
            nonce, blob[start:], blob[:start])
    except (InvalidTag, ValueError) as exc:
        raise TamperedBackup("the backup does not authenticate: it is damaged or was "
                             "altered") from exc
    meta: dict[str, Any] = header.get("meta") or {}
    return meta, payload
