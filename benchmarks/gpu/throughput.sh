# The issue-4 GPU targets on a lent H100 (benchmarks/results/throughput-gpu-*.json): MiniLM and a BERT-base-sized
# model, `emocli tag` end to end vs the transformers pipeline vs the bare forward, at max length 128; first, GPU
# scores (bf16 and fp32) against the CPU fp32 transformers forward through a real `emocli tag` run.
source benchmarks/gpu/setup.sh
[ -e /tmp/corpus.parquet ] || python3 -m benchmarks.make_corpus 300000 /tmp/corpus.parquet
python3 -m benchmarks.gpu.check_scores --base /tmp/minilm --corpus /tmp/corpus.parquet --rows 4000 \
    --out "$OUT/check-scores-h100-minilm.json" 2>&1 | tail -25
for model in minilm bert-base; do
    flag=$([ "$model" = bert-base ] && echo --bert-base)
    python3 -m benchmarks.throughput --base /tmp/minilm $flag --corpus /tmp/corpus.parquet --rows "${ROWS:-200000}" \
        --peer-rows "${PEER_ROWS:-20000}" --pipeline-bf16 --out "$OUT/throughput-h100-$model.json" 2>&1 >/dev/null
done
