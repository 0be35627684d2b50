# The online-stats service as a container: built in one stage, run from a second that holds only the
# built service and its production dependencies, as an unprivileged user, with its data in /data.
#
#   docker build -t online-stats .
#   docker run -p 8001:8001 -v online-stats-data:/data online-stats
#
# Node 22: the newest releases of two dependencies of Fastify's plugins declare it (Node 20 works,
# with a warning at install).

FROM node:22-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source where no prebuilt binary can be downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY client ./client
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim
# `docker stop` kills 10 s after SIGTERM: the drain of in-flight requests (SHUTDOWN_TIMEOUT, 10 s by default)
# gets 8 of them here, so that closing the database fits too and the service still exits 0.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8001 \
    DATA_DIR=/data \
    SHUTDOWN_TIMEOUT=8s
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY LICENSE README.md ./
# The image's own user "node" (uid 1000) owns the data directory and nothing else.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/src/cli.js", "healthcheck"]
# Node is PID 1 and handles SIGTERM itself: it drains, closes the store and exits 0 (docs/operations.md).
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/cli.js", "serve"]
