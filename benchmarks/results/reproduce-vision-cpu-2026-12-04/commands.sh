# vision, budget cpu: preset fashion-mnist
# GIM
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name gim --probe.pool 1 --probe.knn_k 0
gim probe /work/runs/reproduce-vision-all/gim
# GIM, sequential curriculum
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name gim-sequential --train.curriculum sequential --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/gim-sequential
# end-to-end CPC
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name cpc --model.stages_per_module '[3]' --model.autoregressor pixelcnn --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-all/cpc
# greedy supervised
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name greedy-supervised --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/greedy-supervised
# supervised
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name supervised --model.stages_per_module '[3]' --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-all/supervised
# GIM, overlap 1 (LoCo)
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name gim-overlap --model.overlap 1 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/gim-overlap
# CLAPP
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name clapp --objective.name clapp --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/clapp
# SimCLR per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name simclr --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/simclr
# SimCLR end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name simclr-end-to-end --model.stages_per_module '[3]' --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-all/simclr-end-to-end
# Barlow Twins per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name barlow-twins --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/barlow-twins
# Barlow Twins end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name barlow-twins-end-to-end --model.stages_per_module '[3]' --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-all/barlow-twins-end-to-end
# VICReg per module
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name vicreg --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-all/vicreg
# VICReg end to end
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-all --name vicreg-end-to-end --model.stages_per_module '[3]' --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-all/vicreg-end-to-end
