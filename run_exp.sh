#!/bin/bash
# usage: VAR=... ./run_exp.sh "label"
cd /work/wt-funnel
vars=$(env | grep -E '^(RW|MOVES|REPLAY|S0|SI|STEPS|WIDTH|DEPTH|HORIZON|LS|CLIP|SCHED|KL|ITERS|BATCH|LR|EXPLORE|GCLIP|SEED)=' | sort | tr '\n' ' ')
out=$(nice -n 5 ./target/release/examples/funnel_exp 2>/tmp/funnel_exp_last.err)
echo "$out"
tail -3 /tmp/funnel_exp_last.err
echo "| $1 | \`$vars\` | ${out#RESULT } |" >> funnel-experiments.md
