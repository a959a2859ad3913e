# Sourced at the start of each command on a lent GPU machine (the device tool; see benchmarks/gpu/README.md).
# That machine has torch/transformers/accelerate but no polars/duckdb and no internet: wheels and an fp16 copy of
# the packaged MiniLM travel in the git-ignored .dev/ folder, a part per call (each call carries at most 64 MiB).
set -u
mkdir -p /tmp/site
for wheel in .dev/polars/*.whl .dev/duckdb/*.whl; do
    [ -e "$wheel" ] || continue
    marker="/tmp/site/.installed-$(basename "$wheel")"
    [ -e "$marker" ] && continue
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheel" \
        && touch "$marker"
done
export PYTHONPATH="$PWD:/tmp/site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
export EMOCLI_HOME=/tmp/emocli-home
# a call wipes the ignored paths it does not carry: what later calls need lives in /tmp, which stays while warm
[ -d .dev/data/brighter ] && [ ! -d /tmp/brighter ] && cp -r .dev/data/brighter /tmp/brighter
[ -d /tmp/brighter ] && export EMOCLI_BRIGHTER=/tmp/brighter
# the base model: fp16 on the way (size), back to an fp32 checkpoint here (values rounded to fp16 once)
if [ -e .dev/model/minilm/model.fp16.safetensors ] && [ ! -e /tmp/minilm/model.safetensors ]; then
    mkdir -p /tmp/minilm && cp .dev/model/minilm/*.json .dev/model/minilm/vocab.txt /tmp/minilm/
    python3 - <<'PY'
from safetensors.torch import load_file, save_file
weights = load_file(".dev/model/minilm/model.fp16.safetensors")
save_file({k: v.float() for k, v in weights.items()}, "/tmp/minilm/model.safetensors", metadata={"format": "pt"})
PY
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
