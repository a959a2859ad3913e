# The full-scale recipe search (benchmarks/results/quality-search-h100-minilm.md) on a lent GPU: one process per seed, side by
# side (MiniLM at batch 16 leaves an H100 mostly idle), each stopped before the call's 10-minute limit; every
# finished run is already saved, so a stopped process loses only the run in flight.
source benchmarks/gpu/setup.sh
RECIPES=${RECIPES:-"trainer-baseline bce focal bce+cv focal+cv bce-headlr focal-headlr bce-last bce-lr2e-4 asymmetric weighted-bce-inverse bce-e10"}
for seed in ${SEEDS:-1 2 3}; do
    timeout "${LIMIT:-500}" python3 -m benchmarks.quality --device cuda --base /tmp/minilm --seeds "$seed" \
        --train-rows 2014 --tune-rows 250 --holdout-rows 500 --epochs 5 --threads 2 --skip-multilingual \
        --recipes $RECIPES --stem "quality-search-h100-minilm-s$seed" > "$OUT/search-s$seed.log" 2>&1 &
done
wait
cp benchmarks/results/quality-search-h100-minilm-s*.json "$OUT/" 2>/dev/null
grep -h "^\[" "$OUT"/search-s*.log
