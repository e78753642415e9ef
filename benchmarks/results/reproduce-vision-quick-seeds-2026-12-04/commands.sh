# vision, budget quick: preset fashion-mnist
# GIM, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim --data.limit 20000 --probe.pool 1 --probe.knn_k 0
gim probe /work/runs/reproduce-vision-quick-seeds/gim
# GIM, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-seed3 --data.limit 20000 --train.seed 3 --probe.pool 1 --probe.knn_k 0
gim probe /work/runs/reproduce-vision-quick-seeds/gim-seed3
# GIM, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-seed4 --data.limit 20000 --train.seed 4 --probe.pool 1 --probe.knn_k 0
gim probe /work/runs/reproduce-vision-quick-seeds/gim-seed4
# GIM, sequential curriculum, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-sequential --data.limit 20000 --train.curriculum sequential --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-sequential
# GIM, sequential curriculum, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-sequential-seed3 --data.limit 20000 --train.curriculum sequential --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-sequential-seed3
# GIM, sequential curriculum, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-sequential-seed4 --data.limit 20000 --train.curriculum sequential --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-sequential-seed4
# end-to-end CPC, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name cpc --data.limit 20000 --model.stages_per_module '[3]' --model.autoregressor pixelcnn --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/cpc
# greedy supervised, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name greedy-supervised --data.limit 20000 --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/greedy-supervised
# supervised, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name supervised --data.limit 20000 --model.stages_per_module '[3]' --objective.name supervised --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/supervised
# GIM, overlap 1 (LoCo), seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-overlap --data.limit 20000 --model.overlap 1 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-overlap
# GIM, overlap 1 (LoCo), seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-overlap-seed3 --data.limit 20000 --model.overlap 1 --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-overlap-seed3
# GIM, overlap 1 (LoCo), seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name gim-overlap-seed4 --data.limit 20000 --model.overlap 1 --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/gim-overlap-seed4
# CLAPP, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name clapp --data.limit 20000 --objective.name clapp --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/clapp
# SimCLR per module, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr --data.limit 20000 --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr
# SimCLR per module, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-seed3 --data.limit 20000 --objective.name simclr --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-seed3
# SimCLR per module, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-seed4 --data.limit 20000 --objective.name simclr --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-seed4
# SimCLR per module, overlap 1 (LoCo), seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-overlap --data.limit 20000 --model.overlap 1 --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-overlap
# SimCLR per module, overlap 1 (LoCo), seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-overlap-seed3 --data.limit 20000 --model.overlap 1 --objective.name simclr --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-overlap-seed3
# SimCLR per module, overlap 1 (LoCo), seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-overlap-seed4 --data.limit 20000 --model.overlap 1 --objective.name simclr --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-overlap-seed4
# SimCLR end to end, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name simclr --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-end-to-end
# SimCLR end to end, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-end-to-end-seed3 --data.limit 20000 --model.stages_per_module '[3]' --objective.name simclr --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-end-to-end-seed3
# SimCLR end to end, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name simclr-end-to-end-seed4 --data.limit 20000 --model.stages_per_module '[3]' --objective.name simclr --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/simclr-end-to-end-seed4
# Barlow Twins per module, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name barlow-twins --data.limit 20000 --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/barlow-twins
# Barlow Twins end to end, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name barlow-twins-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name barlow_twins --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/barlow-twins-end-to-end
# VICReg per module, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg --data.limit 20000 --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg
# VICReg per module, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-seed3 --data.limit 20000 --objective.name vicreg --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-seed3
# VICReg per module, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-seed4 --data.limit 20000 --objective.name vicreg --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-seed4
# VICReg per module, overlap 1 (LoCo), seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-overlap --data.limit 20000 --model.overlap 1 --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-overlap
# VICReg per module, overlap 1 (LoCo), seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-overlap-seed3 --data.limit 20000 --model.overlap 1 --objective.name vicreg --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-overlap-seed3
# VICReg per module, overlap 1 (LoCo), seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-overlap-seed4 --data.limit 20000 --model.overlap 1 --objective.name vicreg --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-overlap-seed4
# VICReg end to end, seed 2
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-end-to-end --data.limit 20000 --model.stages_per_module '[3]' --objective.name vicreg --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-end-to-end
# VICReg end to end, seed 3
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-end-to-end-seed3 --data.limit 20000 --model.stages_per_module '[3]' --objective.name vicreg --train.seed 3 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-end-to-end-seed3
# VICReg end to end, seed 4
gim pretrain --preset fashion-mnist --output /work/runs/reproduce-vision-quick-seeds --name vicreg-end-to-end-seed4 --data.limit 20000 --model.stages_per_module '[3]' --objective.name vicreg --train.seed 4 --probe.pool 1 --probe.knn_k 0 --probe.random_init false --probe.raw_pixels false --probe.stages_per_module '[1, 1, 1]'
gim probe /work/runs/reproduce-vision-quick-seeds/vicreg-end-to-end-seed4
