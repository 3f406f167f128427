# restic/restic:<tag> from Debian 12's restic 0.14: the binary at /usr/bin/restic, where the backup
# installer copies it from (docs/upstreams.md, versions.restic), and as the entry point. Debian's is
# linked with the C library (the official one is static): it runs on the lab's Debian servers.
ARG BASE
FROM $BASE
ENTRYPOINT ["/usr/bin/restic"]
