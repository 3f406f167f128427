# registry:<tag> from Debian 12's docker-registry 2.8, with what the official image gives the program
# (docs/upstreams.md, versions.registry; distribution-library-image's Dockerfile): the binary as
# `registry`, a default config at /etc/distribution/config.yml (Debian's), the entry point that serves a
# `*.yml` argument (lab/image-files/registry-entrypoint.sh), the config file as command, the volume, port
# 5000 and wget for the healthcheck. It runs as root, as the official image does.
ARG BASE
FROM $BASE
RUN ln -s docker-registry /usr/bin/registry \
    && mkdir -p /etc/distribution /var/lib/registry \
    && cp /etc/docker/registry/config.yml /etc/distribution/config.yml
COPY registry-entrypoint.sh /entrypoint.sh
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/entrypoint.sh"]
CMD ["/etc/distribution/config.yml"]
