# vision, budget quick: preset fashion-mnist
# Barlow Twins per module, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins --data.limit 20000 --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins
# Barlow Twins per module, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-seed3 --data.limit 20000 --objective.name barlow_twins --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-seed3
# Barlow Twins per module, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-seed4 --data.limit 20000 --objective.name barlow_twins --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-seed4
# Barlow Twins per module, overlap 1 (LoCo), seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-overlap --data.limit 20000 --model.overlap 1 --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-overlap
# Barlow Twins per module, overlap 1 (LoCo), seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-overlap-seed3 --data.limit 20000 --model.overlap 1 --objective.name barlow_twins --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-overlap-seed3
# Barlow Twins per module, overlap 1 (LoCo), seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-overlap-seed4 --data.limit 20000 --model.overlap 1 --objective.name barlow_twins --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-overlap-seed4
# Barlow Twins end to end, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-end-to-end
# Barlow Twins end to end, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-end-to-end-seed3 --data.limit 20000 --model.stages_per_module '[3]' --objective.name barlow_twins --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-end-to-end-seed3
# Barlow Twins end to end, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-bt --name barlow-twins-end-to-end-seed4 --data.limit 20000 --model.stages_per_module '[3]' --objective.name barlow_twins --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-bt/barlow-twins-end-to-end-seed4
