# Issue 17's GPU row: torch fp32 and bf16 (the GPU default) beside the fp32 ONNX export on onnxruntime's CUDA
# provider, through `emocli tag` end to end (`benchmarks.throughput --onnx --gpu`). The machine's own onnxruntime is
# the CPU build; onnxruntime-gpu 1.31.1 (CUDA 13, cuDNN 9: the machine's nvidia-*-cu13) is a 256 MB wheel, over one
# call's 64 MiB, so it travels in parts, one per call, into /tmp/ortgpu (kept while the machine stays warm):
#   here:  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#              --platform manylinux_2_28_x86_64 -d /tmp/ortgpu onnxruntime-gpu==1.31.1
#          mkdir -p .dev/ortgpu && split -b 58M -d /tmp/ortgpu/onnxruntime_gpu-*.whl .dev/ortgpu/part.
#          (cd /tmp/ortgpu && sha256sum onnxruntime_gpu-*.whl) > .dev/ortgpu.sha256
#   there, one call per part (carry .dev/ortgpu/part.0N and .dev/ortgpu.sha256): PART=0N bash benchmarks/gpu/onnx_cuda.sh
#   then, carrying .dev/duckdb, .dev/model and .dev/data (polars already installed by an earlier call):
#          bash benchmarks/gpu/onnx_cuda.sh
source benchmarks/gpu/setup.sh
mkdir -p /tmp/ortgpu
if [ -n "${PART:-}" ]; then
    cp ".dev/ortgpu/part.$PART" /tmp/ortgpu/ && cp .dev/ortgpu.sha256 /tmp/ortgpu/ && ls -la /tmp/ortgpu
    exit
fi
if [ ! -e /tmp/ortgpu/.installed ]; then
    (cd /tmp/ortgpu && name=$(awk '{print $2}' ortgpu.sha256) && cat part.* > "$name" && sha256sum -c ortgpu.sha256) \
        || { echo "onnxruntime-gpu: parts missing or corrupt in /tmp/ortgpu"; exit 3; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ortgpu/site \
        /tmp/ortgpu/onnxruntime_gpu-*.whl && touch /tmp/ortgpu/.installed
fi
export PYTHONPATH="/tmp/ortgpu/site:$PYTHONPATH"
python3 -c "import torch, onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())"
[ -e /tmp/corpus.parquet ] || python3 -m benchmarks.make_corpus 300000 /tmp/corpus.parquet
[ -d /tmp/refmodel ] || python3 -m emocli.cli finetune --train /tmp/brighter/train/eng.csv --base /tmp/minilm \
    --out /tmp/refmodel --epochs 2 --max-length 128 --thresholds fixed --quiet
python3 -m benchmarks.throughput --onnx --gpu --model /tmp/refmodel --corpus /tmp/corpus.parquet \
    --dev /tmp/brighter/dev/eng.csv --rows "${ROWS:-100000}" --peer-rows "${PEER_ROWS:-20000}" --repeat 3 \
    --out "$OUT/onnx-gpu-h100-minilm.json" 2>&1 | tail -40
