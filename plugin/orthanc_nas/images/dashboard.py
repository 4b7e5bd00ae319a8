"""Dashboard figures: Orthanc's statistics, the plugin's own tables and the NAS state."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..db import Database
from ..orthanc_api import OrthancApi
from .received import Received
from .shares import LIVE

DAY = 86400.0
CACHE_SECONDS = 30.0


class Dashboard:
    def __init__(self, db: Database, orthanc: OrthancApi, clock: Clock,
                 nas_status: Callable[[], dict[str, Any]], received: Received) -> None:
        self._db = db
        self._received = received
        self._orthanc = orthanc
        self._clock = clock
        self._nas_status = nas_status
        self._modalities: tuple[float, int, dict[str, int]] | None = None

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        row = self._db.one(sql, params)
        return int(row[0]) if row and row[0] is not None else 0

    def modalities(self, series_count: int) -> dict[str, int]:
        """Series per modality (from Orthanc's index; cached briefly, it walks every series,
        and at once taken again when Orthanc's series count moved)."""
        now = time.monotonic()
        cached = self._modalities
        if cached is None or now - cached[0] > CACHE_SECONDS or cached[1] != series_count:
            series = self._orthanc.post("/tools/find", json.dumps(
                {"Level": "Series", "Query": {}, "Expand": True}).encode())
            counts: dict[str, int] = {}
            for s in series:
                modality = s.get("MainDicomTags", {}).get("Modality", "") or "unknown"
                counts[modality] = counts.get(modality, 0) + 1
            cached = (now, series_count, dict(sorted(counts.items())))
            self._modalities = cached
        return cached[2]

    def uploads_per_day(self, user_id: int | None, days: int = 30) -> list[dict[str, Any]]:
        since = self._clock.now() - days * DAY
        where = "WHERE created_at >= ?" + ("" if user_id is None else " AND user_id = ?")
        params = (since,) if user_id is None else (since, user_id)
        rows = self._db.all(f"SELECT date(created_at, 'unixepoch') AS day, COUNT(*) AS n"  # noqa: S608
                            f" FROM instance_owners {where} GROUP BY day ORDER BY day", params)
        return [{"day": r["day"], "instances": r["n"]} for r in rows]

    def logins(self, actor: str | None) -> dict[str, Any]:
        now = self._clock.now()
        out: dict[str, Any] = {}
        for label, span in (("24h", DAY), ("7d", 7 * DAY)):
            args: tuple[Any, ...] = (now - span,) if actor is None else (now - span, actor)
            who = "" if actor is None else " AND actor = ?"
            out[f"logins_{label}"] = self._count(
                f"SELECT COUNT(*) FROM audit WHERE event = 'login' AND outcome = 'success'"  # noqa: S608
                f" AND ts >= ?{who}", args)
            out[f"active_users_{label}"] = self._count(
                f"SELECT COUNT(DISTINCT actor) FROM audit WHERE event = 'login'"  # noqa: S608
                f" AND outcome = 'success' AND ts >= ?{who}", args)
            out[f"lockouts_{label}"] = self._count(
                f"SELECT COUNT(*) FROM audit WHERE event = 'lockout' AND ts >= ?{who}", args)  # noqa: S608
        return out

    def two_factor_adoption(self) -> dict[str, dict[str, int]]:
        rows = self._db.all("SELECT role, COUNT(*) AS n, SUM(totp_enabled) AS totp FROM users"
                            " WHERE enabled = 1 GROUP BY role")
        return {r["role"]: {"users": r["n"], "totp": int(r["totp"] or 0)} for r in rows}

    def shares(self, user_id: int | None) -> dict[str, int]:
        now = self._clock.now()
        mine = "" if user_id is None else " AND created_by = ?"
        extra: tuple[Any, ...] = () if user_id is None else (user_id,)
        return {
            "active": self._count(f"SELECT COUNT(*) FROM shares WHERE {LIVE}{mine}",  # noqa: S608
                                  (now, *extra)),
            "opened": self._count(f"SELECT COALESCE(SUM(views), 0) FROM shares"  # noqa: S608
                                  f" WHERE 1 = 1{mine}", extra),
            "created": self._count(f"SELECT COUNT(*) FROM shares WHERE 1 = 1{mine}", extra)}  # noqa: S608

    def stats(self, user_id: int, username: str, admin: bool,
              visible_studies: int | None) -> dict[str, Any]:
        """Everything for admins; a user's own numbers otherwise, and what the clinic
        received (every role sees every study in the shared mode)."""
        received = {"received_per_day": self._received.per_day(30),
                    "received_by_origin": self._received.by_origin(30)}
        if not admin:
            return {"scope": "mine", "studies": visible_studies, **received,
                    "uploads_per_day": self.uploads_per_day(user_id),
                    "uploaded_instances": self._count(
                        "SELECT COUNT(*) FROM instance_owners WHERE user_id = ?", (user_id,)),
                    "logins": self.logins(username), "shares": self.shares(user_id)}
        stats = self._orthanc.get("/statistics")
        nas = self._nas_status()
        return {"scope": "all", **received,
                "orthanc": {"studies": stats["CountStudies"], "series": stats["CountSeries"],
                            "instances": stats["CountInstances"],
                            "disk_bytes": int(stats.get("TotalDiskSize", 0))},
                "modalities": self.modalities(int(stats["CountSeries"])),
                "uploads_per_day": self.uploads_per_day(None),
                "logins": self.logins(None), "two_factor": self.two_factor_adoption(),
                "locked_now": self._count(
                    "SELECT COUNT(*) FROM users WHERE locked_out = 1 OR locked_until > ?"
                    " OR id IN (SELECT user_id FROM login_failures WHERE locked_until > ?)",
                    (self._clock.now(), self._clock.now())),
                "shares": self.shares(None),
                "nas": {k: nas[k] for k in ("enabled", "connected", "pending", "failed",
                                             "free_bytes", "total_bytes", "last_error")}}
