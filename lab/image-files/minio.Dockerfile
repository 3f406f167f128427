# A STAND-IN for quay.io/minio/minio:<tag>: MinIO has no Debian package. It holds what the program
# declares of MinIO's container (docs/upstreams.md, versions.minio; components/services/storage/component.py): `minio server
# DIR --address :PORT --console-address :PORT` with MINIO_ROOT_USER/PASSWORD, both ports (busybox's
# httpd), the data volume /data, and `mc ready local` for the healthcheck
# (lab/image-files/minio-stand-in.sh, mc-stand-in.sh). No S3: the rehearsal's S3 is a stand-in of its own.
ARG BASE
FROM $BASE
COPY minio-stand-in.sh /usr/bin/minio
COPY mc-stand-in.sh /usr/bin/mc
LABEL org.samarth.lab.stand-in="MinIO: its ports, volume and readiness, no S3"
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["/usr/bin/minio"]
