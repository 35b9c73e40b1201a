# The base image the worker's Dockerfile names (node:<major>-<suite>-slim), made by base-image.sh
# from a debootstrap'ed Debian and the Node.js binary of the npm registry, laid out like the
# official image: node and npm in /usr/local, a `node` user and group with ID 1000. It also trusts
# what the building machine trusts (its CA bundle, see base-image.sh), so that npm reaches the
# registry from a build on a machine whose egress inspects TLS.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
ARG NODE_VERSION
ARG NPM_VERSION
ARG NODE_EXTRA_CA_CERTS
ENV NODE_VERSION=${NODE_VERSION} \
    NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS}
COPY node /usr/local/bin/node
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY npm.tgz /tmp/npm.tgz
RUN groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && mkdir -p /usr/local/lib/node_modules/npm \
 && tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner \
 && rm /tmp/npm.tgz \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
