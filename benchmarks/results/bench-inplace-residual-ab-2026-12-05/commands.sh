cd /work/main
for r in 1 2; do
  for side in base new; do
    if [ $side = base ]; then export PYTHONPATH=SNAPSHOT_OF_e5cb49b; else unset PYTHONPATH; fi
    echo "round $r $side start $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/python -m greedy_infomax.cli bench --presets paper-stl10 fashion-mnist --modes simultaneous --precisions fp32 --batch_size 32 --output OUT/$side-$r > OUT/$side-$r.log 2>&1
    grep -E '^\| (paper-stl10|fashion-mnist) \| fp32' OUT/$side-$r.md
  done
done
echo done $(date +%T)
