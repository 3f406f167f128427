# A STAND-IN for quay.io/minio/minio:<tag>: MinIO has no Debian package. It holds what the program
# declares of MinIO's container (docs/upstreams.md, versions.minio; components/services/storage/component.py): `minio server
# DIR --address :PORT --console-address :PORT` with MINIO_ROOT_USER/PASSWORD, both ports (busybox's
# httpd), the data volume /data, and `mc ready local` for the healthcheck
# (lab/image-files/minio-stand-in.sh, mc-stand-in.sh), and S3 on the API port: moto's, in memory, with
# every access key accepted (s3-stand-in.py; moto and what it needs, copied from the lab's venv as
# python-packages.tar, on Debian's Python 3).
ARG BASE
FROM $BASE
ADD python-packages.tar /usr/lib/python3/dist-packages/
COPY s3-stand-in.py /usr/local/lib/samarth/s3-stand-in.py
COPY minio-stand-in.sh /usr/bin/minio
COPY mc-stand-in.sh /usr/bin/mc
LABEL org.samarth.lab.stand-in="MinIO: its ports, volume and readiness; S3 from moto, in memory; no IAM"
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["/usr/bin/minio"]
