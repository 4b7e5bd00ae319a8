"""The visibility modes (docs/security.md, "Who sees which study") and where each can hold.

``shared`` (the default): every role sees every study, in the plugin's pages as in Orthanc
Explorer; ``mine`` is a filter. ``strict``: a ``user`` sees only own and assigned studies,
everywhere. Orthanc's HTTP filter can only allow or refuse a request, never trim a list, so
strict mode needs Orthanc's labels (1.12+) to trim Explorer, REST lists, ``/tools/find`` and
DICOMweb; without them the plugin refuses to start in that mode rather than pretend.
"""

from __future__ import annotations

from ..orthanc_api import OrthancApi, OrthancError

SHARED, STRICT = "shared", "strict"


def has_labels(orthanc: OrthancApi) -> bool:
    """Orthanc 1.12 added labels and ``GET /tools/labels``; 1.10.1 answers 404."""
    try:
        orthanc.get("/tools/labels")
    except OrthancError:
        return False
    return True


def strict_refusal(orthanc: OrthancApi) -> str:
    """Why the strict mode cannot be enforced on this Orthanc (it never can, so far)."""
    if not has_labels(orthanc):
        return ("'strict' cannot be enforced on this Orthanc: it has no labels (Orthanc 1.12 or "
                "later), so Orthanc Explorer, REST lists, /tools/find and DICOMweb would still "
                "show every study to every user. Use 'shared' (docs/security.md)")
    return ("'strict' is not implemented yet by this version of the plugin, although this "
            "Orthanc has labels. Use 'shared' (docs/security.md)")
