# vision, budget quick: preset fashion-mnist
# GIM
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name gim --data.limit 20000 --probe.pool 1 --probe.knn_k 0
gim probe /work/runs/reproduce-vision-quick/gim
# GIM, sequential curriculum
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name gim-sequential --data.limit 20000 --train.curriculum sequential --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/gim-sequential
# end-to-end CPC
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name cpc --data.limit 20000 --model.stages_per_module '[3]' --model.autoregressor pixelcnn --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick/cpc
# greedy supervised
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name greedy-supervised --data.limit 20000 --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/greedy-supervised
# supervised
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name supervised --data.limit 20000 --model.stages_per_module '[3]' --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick/supervised
# GIM, overlap 1 (LoCo)
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name gim-overlap --data.limit 20000 --model.overlap 1 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/gim-overlap
# CLAPP
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name clapp --data.limit 20000 --objective.name clapp --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/clapp
# SimCLR per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name simclr --data.limit 20000 --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/simclr
# SimCLR end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name simclr-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick/simclr-end-to-end
# Barlow Twins per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name barlow-twins --data.limit 20000 --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/barlow-twins
# Barlow Twins end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name barlow-twins-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick/barlow-twins-end-to-end
# VICReg per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name vicreg --data.limit 20000 --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick/vicreg
# VICReg end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick --name vicreg-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick/vicreg-end-to-end
