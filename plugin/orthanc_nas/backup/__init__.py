"""Encrypted backups of the plugin's state to the NAS, and the restore from the NAS.

``crypto`` (the backup key and the file format), ``snapshot`` (what a backup holds),
``store`` (the NAS folder, listing and retention), ``runner`` (one backup, run in a child
process), ``service`` (the plugin's side: schedule, API, health), ``restore`` (state, instance
import, verify-only) and ``cli`` (``python -m orthanc_nas.backup``). docs/backup.md explains
the choices.
"""
