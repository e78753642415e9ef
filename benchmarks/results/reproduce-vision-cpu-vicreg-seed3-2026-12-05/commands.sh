# vision, budget cpu: preset fashion-mnist
# VICReg per module, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-cpu-seed3 --name vicreg-seed3 --objective.name vicreg --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-cpu-seed3/vicreg-seed3
# VICReg end to end, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-cpu-seed3 --name vicreg-end-to-end-seed3 --model.stages_per_module '[3]' --objective.name vicreg --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-cpu-seed3/vicreg-end-to-end-seed3
