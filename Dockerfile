# Orthanc NAS Integration on the Orthanc team's image (newer Orthanc, Python plugin 7.x).
# Not buildable on the project's development machines (no Docker engine there): see README.

# The C gate needs only Orthanc's plugin header (stable C ABI, version-checked at load).
FROM debian:12 AS gate
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev orthanc-dev
COPY plugin/gate/gate.c /src/gate.c
RUN gcc -O2 -fPIC -shared -Wall -Wextra -Werror -o /src/libOrthancNasGate.so /src/gate.c -lpthread

FROM orthancteam/orthanc:25.10.1

ENV ORTHANC_NAS_HOME=/opt/orthanc-nas \
    ORTHANC_NAS_DATA_DIR=/var/lib/orthanc-nas \
    ORTHANC_NAS_HTTP_PORT=8042 \
    ORTHANC_NAS_DICOM_PORT=4242 \
    ORTHANC_NAS_VENV=/nonexistent \
    TCP_NODELAY=1

COPY pyproject.toml README.md ${ORTHANC_NAS_HOME}/
COPY plugin ${ORTHANC_NAS_HOME}/plugin
COPY orthanc.json ${ORTHANC_NAS_HOME}/orthanc.json
COPY --from=gate /src/libOrthancNasGate.so ${ORTHANC_NAS_HOME}/plugin/gate/libOrthancNasGate.so

# The dependencies go into the image's Python, the one its plugin embeds.
RUN python3 -m pip install --no-cache-dir --break-system-packages ${ORTHANC_NAS_HOME} \
 && mkdir -p /usr/share/orthanc/plugins ${ORTHANC_NAS_DATA_DIR} \
 && for p in libOrthancPython.so libOrthancDicomWeb.so libOrthancGdcm.so; do \
      ln -sf /usr/share/orthanc/plugins-available/$p /usr/share/orthanc/plugins/$p; \
    done

VOLUME ["/var/lib/orthanc-nas"]
EXPOSE 8042 4242
# Our own configuration, not the image's generated one.
ENTRYPOINT ["Orthanc", "/opt/orthanc-nas/orthanc.json"]
