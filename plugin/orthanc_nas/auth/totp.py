"""TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift) and its QR code."""

from __future__ import annotations

import hmac
import io

import pyotp
import qrcode
from qrcode.image.pure import PyPNGImage

STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return str(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer))


def qr_png(uri: str) -> bytes:
    image = qrcode.make(uri, image_factory=PyPNGImage, box_size=6, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step (within the drift window) whose code equals ``code``, else None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP_SECONDS)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found
