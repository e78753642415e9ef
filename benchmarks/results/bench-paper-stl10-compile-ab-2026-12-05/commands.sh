cd /work/main
for r in 1 2; do
  for c in false true; do
    echo "round $r compile $c start $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/gim bench --presets paper-stl10 --modes simultaneous --precisions fp32 --batch_size 32 --train.compile $c --output OUT/stl-compile-$c-$r > OUT/stl-compile-$c-$r.log 2>&1
    grep '^| paper-stl10' OUT/stl-compile-$c-$r.md
  done
done
echo done $(date +%T)
