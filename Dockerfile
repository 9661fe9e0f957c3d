# syntax=docker/dockerfile:1
#
# Parley image: one image, the `parley` CLI as entrypoint.
#   docker build -t parley .
#   docker run --rm parley --help
#   docker run --rm -p 50051:50051 -p 9090:9090 parley up
#
# gRPC listens on 50051, HTTP (/metrics, /healthz, /readyz, admin) on 9090.

# ---- build: all dependencies, protobuf codegen, TypeScript --------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
ENV CI=true
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# package.json has no postinstall/prepare hook, so build explicitly; then drop
# the compiled tests and every devDependency (typescript, protoc, ts-proto and
# the `node` package: the runtime uses the image's own node).
RUN npm run build \
 && rm -rf dist/test \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime --------------------------------------------------------------------
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PARLEY_HOST=0.0.0.0 \
    PARLEY_DATA_DIR=/data
WORKDIR /app
# xsltproc: the compliance service's XSLT processor (services/compliance/xslt.ts).
RUN apt-get update \
 && apt-get install -y --no-install-recommends xsltproc \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 parley \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin parley \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The compliance export's XSD and the example stylesheets (mount your own with --xslt).
COPY --from=build /app/services/compliance/schema ./services/compliance/schema
COPY --from=build /app/services/compliance/stylesheets ./services/compliance/stylesheets
USER 10001:10001
EXPOSE 50051 9090
# Node options of every server process: services/common/node-flags.ts.
ENTRYPOINT ["node", "--max-semi-space-size=8", "dist/client/cli/main.js"]
CMD ["--help"]
