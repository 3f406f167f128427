# A STAND-IN for opensearchproject/opensearch:<tag>: OpenSearch has no Debian package. It holds what the
# program declares of OpenSearch's container (docs/upstreams.md, versions.opensearch; components/services/databases/catalogue.py):
# the image's user 1000:1000 owning /usr/share/opensearch and its data volume, port 9200 answering the
# healthcheck's `curl -K <file> .../_cluster/health` and the password check's `/_plugins/_security/authinfo`
# for `admin` with basic authentication (busybox's httpd; lab/image-files/opensearch-stand-in.sh), and curl.
# No search: nothing is indexed.
ARG BASE
FROM $BASE
RUN groupadd --gid 1000 opensearch \
    && useradd --uid 1000 --gid 1000 --home-dir /usr/share/opensearch --no-create-home opensearch \
    && mkdir -p /usr/share/opensearch/data \
    && chown -R 1000:1000 /usr/share/opensearch
COPY --chown=1000:1000 opensearch-stand-in.sh /usr/share/opensearch/opensearch-docker-entrypoint.sh
LABEL org.samarth.lab.stand-in="OpenSearch: its port, volume, health and admin password, no search"
WORKDIR /usr/share/opensearch
USER 1000
EXPOSE 9200 9300 9600 9650
ENTRYPOINT ["./opensearch-docker-entrypoint.sh"]
CMD ["opensearch"]
