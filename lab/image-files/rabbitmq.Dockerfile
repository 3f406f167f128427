# rabbitmq:<tag> from Debian 12's RabbitMQ 3.10 (the lab's RabbitMQ image, lab/images.py), with what the
# official image gives the program (docs/upstreams.md, versions.rabbitmq; docker-library/rabbitmq's 4.x
# Dockerfile): the rabbitmq user and group 999 owning the data, config and log directories, HOME at the data
# directory (so `docker exec ... rabbitmqctl` as root finds the Erlang cookie the server wrote there),
# Erlang as PID 1, logs on the console, the guest user allowed from anywhere, the entry point that drops to
# rabbitmq (with util-linux's setpriv: busybox has none), the volume and the ports.
ARG BASE
FROM $BASE
COPY rootfs/ /
COPY rabbitmq-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY rabbitmq-defaults.conf /etc/rabbitmq/conf.d/10-defaults.conf
RUN echo 'rabbitmq:x:999:999::/var/lib/rabbitmq:/bin/sh' >>/etc/passwd \
    && echo 'rabbitmq:x:999:' >>/etc/group \
    && mkdir -p /var/lib/rabbitmq /etc/rabbitmq/conf.d /var/log/rabbitmq \
    && chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq /var/log/rabbitmq \
    && chmod 1777 /var/lib/rabbitmq /etc/rabbitmq /etc/rabbitmq/conf.d /var/log/rabbitmq
ENV HOME=/var/lib/rabbitmq \
    LANG=C.UTF-8 LANGUAGE=C.UTF-8 LC_ALL=C.UTF-8 \
    RUNNING_UNDER_SYSTEMD=true
VOLUME /var/lib/rabbitmq
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
EXPOSE 4369 5671 5672 15691 15692 25672
CMD ["rabbitmq-server"]
