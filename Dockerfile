# Orthanc NAS Integration on Debian 13 (Orthanc 1.12.7, Python plugin 5.0, Python 3.13).
# Not buildable on the project's development machines (no Docker engine there): the image is
# tested by equivalence instead. CI's Debian 13 root (scripts/trixie-root) installs the same
# Debian packages (scripts/debian-packages, read by both) and runs the same scripts/install;
# the integration suite runs against Orthanc in that root. See README, "Docker".
FROM debian:13-slim

ENV ORTHANC_NAS_HOME=/opt/orthanc-nas \
    ORTHANC_NAS_VENV=/opt/orthanc-nas/.venv \
    ORTHANC_NAS_DATA_DIR=/var/lib/orthanc-nas \
    ORTHANC_NAS_HTTP_PORT=8042 \
    ORTHANC_NAS_DICOM_PORT=4242 \
    TCP_NODELAY=1

COPY scripts/debian-packages /tmp/debian-packages
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $(grep -v -e '^#' -e '^[[:space:]]*$' /tmp/debian-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/debian-packages

COPY pyproject.toml README.md orthanc.json ${ORTHANC_NAS_HOME}/
COPY plugin ${ORTHANC_NAS_HOME}/plugin
COPY scripts ${ORTHANC_NAS_HOME}/scripts
# The same install as on a machine and in CI's root: the C gate, the venv on Debian's Python.
RUN ${ORTHANC_NAS_HOME}/scripts/install && mkdir -p ${ORTHANC_NAS_DATA_DIR}

VOLUME ["/var/lib/orthanc-nas"]
EXPOSE 8042 4242
# scripts/start: Orthanc with our orthanc.json, started again if it dies (tested in CI's root).
ENTRYPOINT ["/opt/orthanc-nas/scripts/start"]
