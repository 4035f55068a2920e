#!/usr/bin/env bash
# Regenerates gen/ from proto/ (and the health/reflection protos that ship in their npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf generate
# grpc.health.v1 and grpc.reflection come from the packages that publish them.
npx buf generate node_modules/grpc-health-check/proto --template buf.gen.deps.yaml
npx buf generate node_modules/@grpc/reflection/build/proto --template buf.gen.deps.yaml --path node_modules/@grpc/reflection/build/proto/grpc
