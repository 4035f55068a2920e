# passkeyd image: the same steps CI runs (npm ci, npm run build), then the built server.
# Build: docker build -t passkeyd .   Run: docker run -p 8080:8080 -v passkeyd-data:/data passkeyd
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PASSKEYD_HOST=0.0.0.0 \
    PASSKEYD_PORT=8080 \
    PASSKEYD_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# With NODE_ENV=production, bin/passkeyd.js runs the compiled dist/ (no TypeScript loader at run time).
# Node's flags are those of `npm start` (package.json; test/start-command.test.ts keeps the two alike).
CMD ["node", "--max-semi-space-size=64", "bin/passkeyd.js", "serve"]
