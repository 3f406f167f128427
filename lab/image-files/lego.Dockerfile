# goacme/lego:<tag> from Debian 12's lego 4.9: the binary as /lego and the entry point, as in go-acme/lego's
# buildx.Dockerfile (docs/upstreams.md, versions.lego: the script passes arguments only), with the CA
# certificates it trusts.
ARG BASE
FROM $BASE
RUN ln -s /usr/bin/lego /lego
ENTRYPOINT ["/lego"]
EXPOSE 80
