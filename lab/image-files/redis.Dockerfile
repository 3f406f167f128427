# redis:<tag> from Debian 12's Redis 7.0, with what the official image gives the program (docs/upstreams.md,
# versions.redis): the redis user and group 999 owning /data, the working directory and volume /data, the
# entry point that drops to that user (lab/image-files/redis-entrypoint.sh) and port 6379. Debian's
# redis-check-rdb is a link to redis-server, as `make install` makes it.
ARG BASE
FROM $BASE
RUN usermod --uid 999 redis && groupmod --gid 999 redis && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
