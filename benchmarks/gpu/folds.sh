# Issue 15's full evidence on a lent GPU (benchmarks/results/quality-folds-h100-minilm.md, after folding the
# per-seed files): the quality-search protocol (train 2014 / tune 250 / holdout 500 rows of train/eng, 5 epochs,
# scored on dev and dev + holdout pooled, 3 seeds) for today's default, max length 128, --folds 5 --distill (its
# run also scores the ensemble it keeps: row "folds5+distill:ensemble") and the Trainer baseline; then the same
# rows on eng+deu+esp+afr. One process per seed, side by side; every finished run is saved at once.
#   PART=eng bash benchmarks/gpu/folds.sh     # one 10-minute call
#   PART=multi bash benchmarks/gpu/folds.sh   # a second call
source benchmarks/gpu/setup.sh
RECIPES=${RECIPES:-"trainer-baseline asymmetric asymmetric-len128 folds5+distill"}
for seed in ${SEEDS:-1 2 3}; do
    if [ "${PART:-eng}" = eng ]; then
        timeout "${LIMIT:-540}" python3 -m benchmarks.quality --device cuda --base /tmp/minilm --seeds "$seed" \
            --train-rows 2014 --tune-rows 250 --holdout-rows 500 --epochs 5 --threads 2 --skip-multilingual \
            --recipes $RECIPES --stem "quality-folds-h100-minilm-eng-s$seed" > "$OUT/folds-eng-s$seed.log" 2>&1 &
    else
        timeout "${LIMIT:-540}" python3 -m benchmarks.quality --device cuda --base /tmp/minilm --seeds "$seed" \
            --skip-english --multi-langs eng deu esp afr --multi-train-rows "${MULTI_ROWS:-1000}" \
            --multi-tune-rows 150 --epochs 5 --threads 2 --multi-recipes $RECIPES \
            --stem "quality-folds-h100-minilm-multi-s$seed" > "$OUT/folds-multi-s$seed.log" 2>&1 &
    fi
done
wait
cp benchmarks/results/quality-folds-h100-minilm-*.json "$OUT/" 2>/dev/null
grep -h "^\[\|Error\|error" "$OUT"/folds-*.log
