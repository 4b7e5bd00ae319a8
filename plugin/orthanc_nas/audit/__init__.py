"""The audit trail (``trail``), its DICOM audit messages and their forwarding to syslog."""

from .trail import (
    FAILURE,
    HEAD_FILE,
    SUCCESS,
    Audit,
    AuditQuery,
    Verification,
    encode,
    outcome_code,
    read_head,
)

__all__ = ["FAILURE", "HEAD_FILE", "SUCCESS", "Audit", "AuditQuery", "Verification", "encode",
           "outcome_code", "read_head"]
