# Sourced by the launchers: defaults for every ORTHANC_NAS_* variable, overridable from the environment.
ORTHANC_NAS_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ORTHANC_NAS_HOME
export ORTHANC_NAS_VENV="${ORTHANC_NAS_VENV:-$ORTHANC_NAS_HOME/.venv}"
export ORTHANC_NAS_HTTP_PORT="${ORTHANC_NAS_HTTP_PORT:-8042}"
export ORTHANC_NAS_DICOM_PORT="${ORTHANC_NAS_DICOM_PORT:-4242}"
data_dir="${ORTHANC_NAS_DATA_DIR:-$ORTHANC_NAS_HOME/data}"
mkdir -p "$data_dir"
# The plugin database, keys and spool: patient data and secrets, for this user only.
chmod 700 "$data_dir" || echo "warning: cannot make $data_dir private (chmod 700)" >&2
ORTHANC_NAS_DATA_DIR="$(cd "$data_dir" && pwd)"
export ORTHANC_NAS_DATA_DIR
export ORTHANC_NAS_SMB_PASSWORD="${ORTHANC_NAS_SMB_PASSWORD:-}"
# DCMTK inside Orthanc leaves Nagle's algorithm on: ten times slower C-STORE without this.
export TCP_NODELAY=1
