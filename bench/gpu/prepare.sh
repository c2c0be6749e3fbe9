#!/usr/bin/env bash
# Packs `npm run bench -- gpu` for a GPU machine that has no Node (the device machine of
# ../shared/guides/gpu-notes.md) into .gpu/ (gitignored, < 64 MiB): this node binary (xz), an
# esbuild bundle of bench/gpu.bench.ts, the `webgpu` package with only this platform's dawn.node,
# the PyTorch side (bench/gpu-torch.py), Debian's Vulkan/GL loader packages, and run.sh.
# Test it here first: `bash bench/gpu/prepare.sh && bash .gpu/run.sh` (runs on llvmpipe).
# On the device: carry [".gpu"], command `bash .gpu/run.sh` (it writes gpu-bench.txt under $OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/app/node_modules/webgpu/dist .gpu/debs
xz -6 -T2 -c "$(command -v node)" > .gpu/node.xz
npx esbuild bench/gpu.bench.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --outfile=.gpu/app/gpu.bench.mjs \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --external:@sed-pipe/blas --external:sharp --external:h5wasm \
  --banner:js='import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);'
cp node_modules/webgpu/index.js node_modules/webgpu/package.json .gpu/app/node_modules/webgpu/
cp -r "node_modules/webgpu/dist/$(node -p 'process.platform + "-" + process.arch')" .gpu/app/node_modules/webgpu/dist/
cp bench/gpu-torch.py bench/torch_head.py .gpu/app/
(cd .gpu/debs && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 >/dev/null)
cat > .gpu/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs the packed GPU bench; figures to stdout and to $OUT/gpu-bench.txt when $OUT is set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null; then
  xz -d -c "$here/node.xz" > "$here/node" && chmod +x "$here/node"
  NODE="$here/node"
else
  NODE="$(command -v node)"
fi
# The Vulkan loader and libglvnd (NVIDIA's ICD needs libGLdispatch) where they are missing.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  for d in "$here"/debs/*.deb; do dpkg -x "$d" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES="$icd"; fi
done
cd "$here/app"
SED_GPU_BENCH_DIR="$here/app/" "$NODE" gpu.bench.mjs 2>&1 | grep -v 'artificially reduced\|BackendVk.cpp\|^Warning: Couldn' | tee "${OUT:-/tmp}/gpu-bench.txt"
RUN
chmod +x .gpu/run.sh
du -sh .gpu
