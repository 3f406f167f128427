# rclone/rclone:<tag> from Debian 12's rclone 1.60: the binary at /usr/local/bin/rclone, where the backup
# installer copies it from (docs/upstreams.md, versions.rclone; copied there in the shared base), as the
# entry point, with the official image's working directory and config home.
ARG BASE
FROM $BASE
ENTRYPOINT ["rclone"]
WORKDIR /data
ENV XDG_CONFIG_HOME=/config
