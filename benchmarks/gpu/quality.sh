# Default recipe vs the Trainer baseline, and every architecture, on a lent GPU (benchmarks/results/quality-h100-minilm.md):
# English with the search protocol (train 2014 / tune 250 / holdout 500 rows of train/eng, scored on dev and on
# dev + holdout pooled) and a multilingual run, one process per seed and experiment, side by side.
source benchmarks/gpu/setup.sh
ARCH="asymmetric asymmetric+cnn-bilstm-attn asymmetric+label-attention small small+distill stack"
for seed in 1 2 3; do
    timeout "${LIMIT:-520}" python3 -m benchmarks.quality --device cuda --base /tmp/minilm --seeds "$seed" \
        --train-rows 2014 --tune-rows 250 --holdout-rows 500 --epochs 5 --threads 2 --skip-multilingual \
        --recipes trainer-baseline $ARCH --stem "quality-h100-minilm-eng-s$seed" > "/tmp/eng-s$seed.log" 2>&1 &
    timeout "${LIMIT:-520}" python3 -m benchmarks.quality --device cuda --base /tmp/minilm --seeds "$seed" \
        --skip-english --multi-langs eng deu esp afr --multi-train-rows "${MULTI_ROWS:-1000}" --multi-tune-rows 150 --epochs 5 \
        --threads 2 --multi-recipes trainer-baseline $ARCH --stem "quality-h100-minilm-multi-s$seed" > "/tmp/multi-s$seed.log" 2>&1 &
done
wait
cp benchmarks/results/quality-h100-minilm-*.json "$OUT/" 2>/dev/null
grep -h "^\[\|Error\|error" /tmp/eng-s*.log /tmp/multi-s*.log | tee "$OUT/quality-h100-minilm.log"
