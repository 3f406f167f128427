# postgres:<tag> from Debian 12's PostgreSQL 15, with what the official image gives the program
# (docs/upstreams.md, versions.postgres): the postgres user and group 999, the server's binaries on PATH,
# PGDATA and its volume, a UTF-8 default locale, the entry point (lab/image-files/postgres-entrypoint.sh),
# SIGINT to stop and port 5432.
ARG BASE
FROM $BASE
RUN usermod --uid 999 postgres && groupmod --gid 999 postgres
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
