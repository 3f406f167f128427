# The drills' image (lab/images.py, import_services): Postgres by default, through Redis's entry point,
# which runs any other command as given; `redis-server ...` as command runs Redis as Debian's redis user.
# Postgres trusts every connection and initialises with data checksums: the drills set no password and
# check checksums on restore.
ARG BASE
FROM $BASE
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    POSTGRES_HOST_AUTH_METHOD=trust \
    POSTGRES_INITDB_ARGS=--data-checksums
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["/usr/local/bin/postgres-entrypoint.sh", "postgres"]
