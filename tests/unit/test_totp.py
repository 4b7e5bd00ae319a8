"""auth/totp.py: RFC 6238 codes, the drift window, provisioning URI and QR code."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from orthanc_nas.auth import totp

# RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def test_rfc_secret_in_base32() -> None:
    assert RFC_SECRET == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.mark.parametrize(("t", "code8"), RFC_VECTORS, ids=[str(t) for t, _ in RFC_VECTORS])
def test_rfc6238_vectors(t: int, code8: str) -> None:
    assert pyotp.TOTP(RFC_SECRET, digits=8).at(t) == code8
    assert pyotp.TOTP(RFC_SECRET).at(t) == code8[-6:]
    assert totp.matching_step(RFC_SECRET, code8[-6:], t) == t // 30


@pytest.mark.parametrize(("t", "code8"), RFC_VECTORS, ids=[str(t) for t, _ in RFC_VECTORS])
def test_eight_digit_code_is_not_accepted(t: int, code8: str) -> None:
    assert totp.matching_step(RFC_SECRET, code8, t) is None


SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_700_000_015.0  # inside step 56_666_667
STEP = int(NOW // 30)


def code_at(step: int) -> str:
    return str(pyotp.TOTP(SECRET).generate_otp(step))


def test_drift_of_one_step_is_accepted() -> None:
    for delta in (-1, 0, 1):
        assert totp.matching_step(SECRET, code_at(STEP + delta), NOW) == STEP + delta


def test_drift_of_two_steps_is_refused() -> None:
    for delta in (-2, 2, -3, 3):
        code = code_at(STEP + delta)
        assert code not in {code_at(STEP - 1), code_at(STEP), code_at(STEP + 1)}
        assert totp.matching_step(SECRET, code, NOW) is None


def test_window_follows_the_clock() -> None:
    code = code_at(STEP)
    assert totp.matching_step(SECRET, code, NOW + 30) == STEP
    assert totp.matching_step(SECRET, code, NOW + 60) is None
    assert totp.matching_step(SECRET, code, NOW - 30) == STEP
    assert totp.matching_step(SECRET, code, NOW - 60) is None


def test_spaces_are_ignored() -> None:
    code = code_at(STEP)
    assert totp.matching_step(SECRET, f" {code[:3]} {code[3:]} ", NOW) == STEP


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345a", "12 345",
                                  "-12345", "+12345", "123.45", "12\n345"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert totp.matching_step(SECRET, code, NOW) is None


@pytest.mark.parametrize("code", ["\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic
                                  "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth
                                  "\u00b9\u00b2\u00b3\u2074\u2075\u2076"])  # superscripts
def test_non_ascii_digits_are_refused_not_an_error(code: str) -> None:
    # str.isdigit() is True for these; they must be refused like any other wrong code
    # (hmac.compare_digest raises TypeError on non-ASCII str).
    assert code.isdigit() and len(code) == 6
    assert "123456" not in {code_at(STEP - 1), code_at(STEP), code_at(STEP + 1)}
    assert totp.matching_step(SECRET, code, NOW) is None


def test_other_secret_does_not_match() -> None:
    other = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"
    assert totp.matching_step(other, pyotp.TOTP(other).at(NOW), NOW) == STEP
    assert totp.matching_step(other, code_at(STEP), NOW) is None


def test_new_secret_is_160_bits_of_base32() -> None:
    secrets = {totp.new_secret() for _ in range(5)}
    assert len(secrets) == 5
    for secret in secrets:
        assert len(secret) == 32
        assert len(base64.b32decode(secret)) == 20


def test_provisioning_uri_names_issuer_and_user() -> None:
    uri = totp.provisioning_uri(SECRET, "alice@example.org", "Orthanc NAS")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Orthanc NAS:alice@example.org"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Orthanc NAS"]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(1_700_000_000) == pyotp.TOTP(SECRET).at(1_700_000_000)


def test_qr_png() -> None:
    png = totp.qr_png(totp.provisioning_uri(SECRET, "alice", "Orthanc NAS"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"IEND" in png[-12:]
    assert len(png) > 200
