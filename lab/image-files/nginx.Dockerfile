# nginx:<tag> from Debian 12's nginx 1.22, with what the official image gives the program (docs/upstreams.md,
# versions.nginx; nginxinc/docker-nginx's Dockerfile): the nginx user and group 101 for the workers, the
# main config of nginx.org's packages (lab/image-files/nginx.conf: it includes /etc/nginx/conf.d/*.conf,
# where the program mounts its config, and nothing of Debian's sites), logs to the container's output,
# curl for the healthcheck, SIGQUIT to stop and port 80. The official entry point's /docker-entrypoint.d
# scripts (config templates, an IPv6 listener in default.conf, worker tuning) are not run: the program
# uses none of them. uid and gid 101 are also Debian's postgres and ssl-cert in the shared base.
ARG BASE
FROM $BASE
RUN groupadd --system --non-unique --gid 101 nginx \
    && useradd --system --non-unique --gid nginx --no-create-home --home-dir /nonexistent --shell /bin/false --uid 101 nginx \
    && rm -rf /etc/nginx/sites-enabled /etc/nginx/sites-available /etc/nginx/modules-enabled /etc/nginx/conf.d \
    && mkdir /etc/nginx/conf.d \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx.conf /etc/nginx/nginx.conf
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
