"""keys.py: the key file (created 0600, checked on every start) and the derived keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orthanc_nas.keys import (
    KEY_BYTES,
    DecryptionError,
    KeyFileError,
    KeyRing,
    load_or_create_key,
)


def test_key_file_is_created_private_with_32_bytes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "orthanc-nas.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == key
    assert load_or_create_key(path) == key  # re-read, not regenerated


def test_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path / "k")
    finally:
        os.umask(old)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_two_key_files_differ(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    load_or_create_key(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="must not be readable by others"):
        load_or_create_key(path)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = load_or_create_key(path)
    path.chmod(0o400)
    assert load_or_create_key(path) == key


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_file_of_wrong_length_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"\x01" * size)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="exactly 32 bytes"):
        load_or_create_key(path)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(bytes(range(32)))


def test_encrypt_decrypt_round_trip(ring: KeyRing) -> None:
    blob = ring.encrypt("totp", b"JBSWY3DPEHPK3PXP", b"user:1")
    assert b"JBSWY3DPEHPK3PXP" not in blob
    assert len(blob) == 12 + 16 + 16  # nonce, ciphertext, tag
    assert ring.decrypt("totp", blob, b"user:1") == b"JBSWY3DPEHPK3PXP"
    assert ring.decrypt("totp", ring.encrypt("totp", b"", b""), b"") == b""


def test_encryption_uses_fresh_nonces(ring: KeyRing) -> None:
    assert ring.encrypt("totp", b"same", b"a") != ring.encrypt("totp", b"same", b"a")


def test_other_aad_does_not_decrypt(ring: KeyRing) -> None:
    blob = ring.encrypt("totp", b"secret", b"user:1")
    with pytest.raises(DecryptionError):
        ring.decrypt("totp", blob, b"user:2")


def test_other_purpose_or_key_does_not_decrypt(ring: KeyRing) -> None:
    blob = ring.encrypt("totp", b"secret", b"user:1")
    with pytest.raises(DecryptionError):
        ring.decrypt("smb", blob, b"user:1")
    with pytest.raises(DecryptionError):
        KeyRing(bytes(32)).decrypt("totp", blob, b"user:1")


def test_any_flipped_byte_is_detected(ring: KeyRing) -> None:
    blob = ring.encrypt("totp", b"secret", b"user:1")
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            ring.decrypt("totp", bytes(tampered), b"user:1")


@pytest.mark.parametrize("blob", [b"", b"short", bytes(12), bytes(27)])
def test_truncated_blob_is_a_decryption_error(ring: KeyRing, blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        ring.decrypt("totp", blob, b"user:1")


def test_mac_is_deterministic_per_purpose(ring: KeyRing) -> None:
    mac = ring.mac("session", "abc")
    assert mac == ring.mac("session", "abc")
    assert mac == KeyRing(bytes(range(32))).mac("session", "abc")
    assert len(mac) == 64 and int(mac, 16) >= 0
    assert mac != ring.mac("api-token", "abc")
    assert mac != ring.mac("session", "abd")
    assert mac != KeyRing(bytes(32)).mac("session", "abc")
    assert len({ring.mac(p, "abc") for p in ("session", "api-token", "backup-code")}) == 3
