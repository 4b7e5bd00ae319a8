"""Orthanc NAS Integration: 2FA login in front of Orthanc, NAS mirroring, share links."""

__version__ = "0.1.0"
