# syntax=docker/dockerfile:1
# The token lifecycle worker: compiled TypeScript and the prebuilt workflow bundle on Node.js 24,
# running as the unprivileged `node` user. Build: docker build -t token-lifecycle-worker .

# ---- build: dev dependencies, tsc, the workflow bundle (webpack runs here, never at start-up) ----
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The consumer library is a workspace the worker imports: npm ci links it and builds it (prepare).
COPY consumers/node ./consumers/node
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY workflows ./workflows
COPY activities ./activities
COPY shared ./shared
COPY worker ./worker
COPY client ./client
COPY cli ./cli
COPY dev ./dev
# tsc to dist/, then dist/workflow-bundle.js and dist/workflow-bundle-traced.js (worker/bundle-workflows.ts).
RUN npm run build \
 && test -s dist/workflow-bundle.js \
 && test -s dist/workflow-bundle-traced.js \
 && npm prune --omit=dev --no-audit --no-fund
# The Temporal SDK's native core ships for five platforms (about 30 MB each): keep this one's.
RUN find node_modules/@temporalio/core-bridge/releases -mindepth 1 -maxdepth 1 ! -name "$(uname -m)-unknown-linux-gnu" -exec rm -rf {} + \
 && test -n "$(ls node_modules/@temporalio/core-bridge/releases)"

# ---- runtime: production dependencies and the build only ----
FROM node:24-bookworm-slim AS runtime
# JSON log lines (LOG_FORMAT) for the container's log pipeline; /metrics on every interface of
# the container (the worker's own default is loopback), so that its port can be published.
ENV NODE_ENV=production \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    LOG_FORMAT=json
WORKDIR /app
# Owned by root and read-only for the worker: the process cannot rewrite its own code.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
# node_modules/token-lifecycle links here.
COPY --from=build /app/consumers/node/package.json ./consumers/node/package.json
COPY --from=build /app/consumers/node/dist ./consumers/node/dist
COPY --from=build /app/dist ./dist
# The IAM emulator's demo clients, for docker-compose's `demo` profile (never used in production).
COPY dev/iam-emulator/demo-clients.yaml ./dev/iam-emulator/demo-clients.yaml
USER node
EXPOSE 9464
# Healthy once /metrics shows the Temporal workers' task slots (worker/healthcheck.ts): the worker
# connected to Temporal and started polling. start-period covers connecting and search attributes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "dist/worker/healthcheck.js"]
# SIGTERM (docker stop) shuts the workers down gracefully: in-flight activities finish first.
STOPSIGNAL SIGTERM
CMD ["node", "dist/worker/main.js"]
