# ruff: noqa: E501 - the published command lines, verbatim
"""The published tomoDRGN v1.0.1's own command tests (its testing/commandtest.py and commandtest_warptools.py), line
for line, run by our ``tomodrgn`` in order on simulated data written in the layouts those lines read
(:mod:`_tomodrgn_testdata`): each exits 0, and every ``OUT/…`` file or folder a line reads was written by an earlier
line (docs/coming-from-tomodrgn.md). Training lines that ask for 40 epochs run 2 here (the full counts: ``slow``)."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest
from _cli_inprocess import run_cli
from _tomodrgn_testdata import make_tomodrgn_test_data

from tomodrgn.cli.tomodrgn_compat import answers

# commandtest.py, in order (Warp-style image series, legacy MRC headers, --source-software cryosrpnt)
COMMANDTEST = """
tomodrgn --version
tomodrgn downsample data/10076_classE_32_sim.star --source-software cryosrpnt --downsample 16 --batch-size 50 --output OUT/10076_classE_16_sim.mrcs --write-tiltseries-starfile
tomodrgn downsample data/10076_classE_32_sim.star --source-software cryosrpnt --downsample 16 --batch-size 50 --output OUT/10076_classE_16_sim.mrcs --write-tiltseries-starfile --lazy
tomodrgn downsample data/10076_classE_32_sim.star --source-software cryosrpnt --downsample 16 --batch-size 50 --output OUT/10076_classE_16_sim.mrcs --write-tiltseries-starfile --chunk 100
tomodrgn backproject_voxel data/10076_classE_32_sim.star --source-software cryosrpnt --output OUT/backproject/classE_sim.mrc --uninvert-data
tomodrgn backproject_voxel data/10076_classE_32_sim.star --source-software cryosrpnt --output OUT/backproject/classE_sim_doseweight.mrc --uninvert-data --recon-dose-weight
tomodrgn backproject_voxel data/10076_classE_32_sim.star --source-software cryosrpnt --output OUT/backproject/classE_sim_tiltweight.mrc --uninvert-data --recon-tilt-weight
tomodrgn backproject_voxel data/10076_classE_32_sim.star --source-software cryosrpnt --output OUT/backproject/classE_sim_lazy.mrc --uninvert-data --lazy
tomodrgn backproject_voxel data/10076_classE_32_sim.star --source-software cryosrpnt --output OUT/backproject/classE_sim_lowpass60.mrc --uninvert-data --lowpass 60
tomodrgn train_nn data/10076_classE_32_sim.star --source-software cryosrpnt --outdir OUT/nn_classE_sim --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 40
tomodrgn train_nn data/10076_classE_32_sim.star --source-software cryosrpnt --outdir OUT/nn_classE_sim_lazy --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 1 --lazy
tomodrgn train_nn data/10076_classE_32_sim.star --source-software cryosrpnt --outdir OUT/nn_classE_sim_dosetiltweightmask --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 40 --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_nn data/10076_classE_32_sim.star --source-software cryosrpnt --outdir OUT/nn_classE_sim_dosetiltweightmask_batchsize8 --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 1 --l-dose-mask --recon-dose-weight --recon-tilt-weight --batch-size 8
tomodrgn convergence_nn OUT/nn_classE_sim data/10076_classE_32.mrc --fsc-mask none
tomodrgn convergence_nn OUT/nn_classE_sim_dosetiltweightmask data/10076_classE_32.mrc --fsc-mask none
tomodrgn convergence_nn OUT/nn_classE_sim_dosetiltweightmask data/10076_classE_32.mrc --fsc-mask sphere
tomodrgn convergence_nn OUT/nn_classE_sim_dosetiltweightmask data/10076_classE_32.mrc --fsc-mask tight
tomodrgn convergence_nn OUT/nn_classE_sim_dosetiltweightmask data/10076_classE_32.mrc --fsc-mask soft
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim2 --zdim 2 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-epochs 40
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8 --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1 --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_lazy --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1 --lazy --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8 --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-epochs 40 --l-dose-mask --recon-dose-weight --recon-tilt-weight --batch-size 8
tomodrgn train_vae data/10076_classE_32_sim.star --source-software cryosrpnt --outdir OUT/vae_classE_sim_zdim8 --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-epochs 40
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_concatenate --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function concatenate --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_max --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function max --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_mean --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function mean --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_median --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function median --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/10076_both_32_sim.star --source-software cryosrpnt --outdir OUT/vae_both_sim_zdim8_setencoder --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function set_encoder --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-seeds 1 --num-heads 2 --layer-norm -n 1
tomodrgn convergence_vae OUT/vae_both_sim_zdim2 --random-seed 42 --final-maxima 2 --ground-truth data/10076_class*_32.mrc
tomodrgn convergence_vae OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8 --random-seed 42 --final-maxima 2 --ground-truth data/10076_class*_32.mrc
tomodrgn analyze OUT/vae_both_sim_zdim2 --ksample 20
tomodrgn analyze OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8 --ksample 20
tomodrgn analyze OUT/vae_classE_sim_zdim8 --ksample 20
tomodrgn eval_vol --weights OUT/vae_both_sim_zdim2/weights.pkl -c OUT/vae_both_sim_zdim2/config.pkl -o OUT/vae_both_sim_zdim2/eval_vol_allz --zfile OUT/vae_both_sim_zdim2/z.train.pkl
tomodrgn eval_vol --weights OUT/vae_both_sim_zdim2/weights.pkl -c OUT/vae_both_sim_zdim2/config.pkl -o OUT/vae_both_sim_zdim2/eval_vol_allz --zfile OUT/vae_both_sim_zdim2/z.train.pkl -b 32
tomodrgn analyze_volumes --voldir OUT/vae_both_sim_zdim2/eval_vol_allz --config OUT/vae_both_sim_zdim2/config.pkl --outdir OUT/vae_both_sim_zdim2/eval_vol_allz_analyze_volumes_mask_sphere --ksample 20 --mask sphere
tomodrgn analyze_volumes --voldir OUT/vae_both_sim_zdim2/eval_vol_allz --config OUT/vae_both_sim_zdim2/config.pkl --outdir OUT/vae_both_sim_zdim2/eval_vol_allz_analyze_volumes_mask_soft --ksample 20 --mask soft
tomodrgn subtomo2chimerax data/10076_both_32_sim_vols.star --mode markers --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/mapback_markers --tomoname both.tomostar --star-angpix-override 10 --coloring-labels data/ptcl_labels_D0_E1.pkl
tomodrgn subtomo2chimerax data/10076_both_32_sim_vols.star --mode volume --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/mapback_volume --tomoname both.tomostar --star-angpix-override 10 --vol-path OUT/backproject/classE_sim_doseweight.mrc --vol-render-level 0.7 --coloring-labels data/ptcl_labels_D0_E1.pkl
tomodrgn subtomo2chimerax data/10076_both_32_sim_vols.star --mode volumes --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/mapback_volumes --tomoname both.tomostar --star-angpix-override 10 --weights OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/weights.39.pkl --config OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/config.pkl --zfile OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --vol-render-level 0.7 --coloring-labels data/ptcl_labels_D0_E1.pkl
tomodrgn subtomo2chimerax data/10076_both_32_sim_vols.star --mode volumes --outdir OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/mapback_volumes_cmaptab10 --tomoname both.tomostar --star-angpix-override 10 --weights OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/weights.39.pkl --config OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/config.pkl --zfile OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --vol-render-level 0.7 --coloring-labels data/ptcl_labels_D0_E1.pkl --colormap tab10
tomodrgn filter_star data/10076_both_32_sim.star --starfile-type imageseries --tomo-id-col _rlnImageName --ind data/ind_ptcl_first10last10.pkl -o OUT/10076_both_32_sim_filtered.star
tomodrgn filter_star data/10076_both_32_sim_vols.star --starfile-type volumeseries --tomo-id-col _rlnImageName --ind data/ind_ptcl_first10last10.pkl -o OUT/10076_both_32_sim_vols_filtered.star
tomodrgn filter_star data/10076_both_32_sim.star --starfile-type imageseries --tomo-id-col _rlnImageName --labels data/labels_D-0_E-1.pkl --labels-sel 0 -o OUT/10076_both_32_sim_filtered_by_labels.star
tomodrgn filter_star data/10076_both_32_sim_vols.star --starfile-type volumeseries --tomo-id-col _rlnImageName --labels data/labels_D-0_E-1.pkl --labels-sel 0 1 -o OUT/10076_both_32_sim_vols_filtered_by_labels.star
tomodrgn eval_images data/10076_classE_32_sim.star --source-software cryosrpnt --weights OUT/vae_classE_sim_zdim8/weights.pkl -c OUT/vae_classE_sim_zdim8/config.pkl --out-z OUT/vae_classE_sim_zdim8/eval_images/z_all.pkl
tomodrgn graph_traversal OUT/vae_both_sim_zdim2/z.39.train.pkl --anchors 5 10 15 20 -o OUT/vae_both_sim_zdim2/graph_traversal --max-neighbors 20 --avg-neighbors 20
tomodrgn graph_traversal OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --anchors 5 10 15 20 -o OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/graph_traversal --max-neighbors 20 --avg-neighbors 10
tomodrgn pc_traversal OUT/vae_both_sim_zdim2/z.train.pkl -o OUT/vae_both_sim_zdim2/pc_traversal
tomodrgn pc_traversal OUT/vae_both_sim_zdim2/z.train.pkl -o OUT/vae_both_sim_zdim2/pc_traversal --use-percentile-spacing
tomodrgn pc_traversal OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/z.train.pkl -o OUT/vae_both_sim_zdim8_dosetiltweightmask_batchsize8/pc_traversal --use-percentile-spacing
tomodrgn view_config OUT/vae_both_sim_zdim2
tomodrgn cleanup OUT/vae_classE_sim_zdim8 --weights --zfiles --volumes --test
tomodrgn cleanup OUT/vae_classE_sim_zdim8 --weights --zfiles --volumes
"""
# commandtest_warptools.py, in order (a WarpTools ts_export_particles --2d optimisation set)
COMMANDTEST_WARPTOOLS = """
tomodrgn --version
tomodrgn downsample data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --downsample 16 --batch-size 50 --output OUT/warptools_70S_box-16.mrcs --write-tiltseries-starfile
tomodrgn downsample data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --downsample 16 --batch-size 50 --output OUT/warptools_70S_box-16.mrcs --write-tiltseries-starfile --lazy
tomodrgn downsample data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --downsample 16 --batch-size 50 --output OUT/warptools_70S_box-16.mrcs --write-tiltseries-starfile --chunk 100
tomodrgn backproject_voxel data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --output OUT/backproject/warptools_70S.mrc --uninvert-data --flip
tomodrgn backproject_voxel data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --output OUT/backproject/warptools_70S_doseweight.mrc --uninvert-data --flip --recon-dose-weight
tomodrgn backproject_voxel data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --output OUT/backproject/warptools_70S_tiltweight.mrc --uninvert-data --flip --recon-tilt-weight
tomodrgn backproject_voxel data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --output OUT/backproject/warptools_70S_lazy.mrc --uninvert-data --flip --lazy
tomodrgn backproject_voxel data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --output OUT/backproject/warptools_70S_lowpass60.mrc --uninvert-data --flip --lowpass 60
tomodrgn train_nn data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/nn_warptools_70S --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 40
tomodrgn train_nn data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/nn_warptools_70S_lazy --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 1 --lazy
tomodrgn train_nn data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/nn_warptools_70S_dosetiltweightmask --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 40 --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_nn data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/nn_warptools_70S_dosetiltweightmask_batchsize8 --uninvert-data --seed 42 --layers 3 --dim 256 --num-epochs 1 --l-dose-mask --recon-dose-weight --recon-tilt-weight --batch-size 8
tomodrgn convergence_nn OUT/nn_warptools_70S data/warptools_test_box-32_angpix-12_reconstruct.mrc --fsc-mask none
tomodrgn convergence_nn OUT/nn_warptools_70S_dosetiltweightmask data/warptools_test_box-32_angpix-12_reconstruct.mrc --fsc-mask none
tomodrgn convergence_nn OUT/nn_warptools_70S_dosetiltweightmask data/warptools_test_box-32_angpix-12_reconstruct.mrc --fsc-mask sphere
tomodrgn convergence_nn OUT/nn_warptools_70S_dosetiltweightmask data/warptools_test_box-32_angpix-12_reconstruct.mrc --fsc-mask tight
tomodrgn convergence_nn OUT/nn_warptools_70S_dosetiltweightmask data/warptools_test_box-32_angpix-12_reconstruct.mrc --fsc-mask soft
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim2 --zdim 2 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-epochs 40
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8 --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1 --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_lazy --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1 --lazy --l-dose-mask --recon-dose-weight --recon-tilt-weight
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8 --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-epochs 40 --l-dose-mask --recon-dose-weight --recon-tilt-weight --batch-size 8
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_concatenate --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function concatenate --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_max --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function max --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_mean --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function mean --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_median --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function median --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 -n 1
tomodrgn train_vae data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --outdir OUT/vae_warptools_70S_zdim8_setencoder --zdim 8 --uninvert-data --seed 42 --log-interval 100 --enc-dim-A 64 --enc-layers-A 2 --out-dim-A 64 --pooling-function set_encoder --enc-dim-B 32 --enc-layers-B 4 --dec-dim 256 --dec-layers 3 --num-seeds 1 --num-heads 2 --layer-norm -n 1
tomodrgn convergence_vae OUT/vae_warptools_70S_zdim2 --random-seed 42 --final-maxima 2 --ground-truth data/warptools_test_box-32_angpix-12_reconstruct.mrc
tomodrgn convergence_vae OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8 --random-seed 42 --final-maxima 2 --ground-truth data/warptools_test_box-32_angpix-12_reconstruct.mrc
tomodrgn analyze OUT/vae_warptools_70S_zdim2 --ksample 20
tomodrgn analyze OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8 --ksample 20
tomodrgn analyze OUT/vae_warptools_70S_zdim8 --ksample 20
tomodrgn eval_vol --weights OUT/vae_warptools_70S_zdim2/weights.pkl -c OUT/vae_warptools_70S_zdim2/config.pkl -o OUT/vae_warptools_70S_zdim2/eval_vol_allz --zfile OUT/vae_warptools_70S_zdim2/z.train.pkl
tomodrgn eval_vol --weights OUT/vae_warptools_70S_zdim2/weights.pkl -c OUT/vae_warptools_70S_zdim2/config.pkl -o OUT/vae_warptools_70S_zdim2/eval_vol_allz --zfile OUT/vae_warptools_70S_zdim2/z.train.pkl -b 32
tomodrgn analyze_volumes --voldir OUT/vae_warptools_70S_zdim2/eval_vol_allz --config OUT/vae_warptools_70S_zdim2/config.pkl --outdir OUT/vae_warptools_70S_zdim2/eval_vol_allz_analyze_volumes_mask_sphere --ksample 20 --mask sphere
tomodrgn analyze_volumes --voldir OUT/vae_warptools_70S_zdim2/eval_vol_allz --config OUT/vae_warptools_70S_zdim2/config.pkl --outdir OUT/vae_warptools_70S_zdim2/eval_vol_allz_analyze_volumes_mask_soft --ksample 20 --mask soft
tomodrgn subtomo2chimerax data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --mode markers --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/mapback_markers --tomoname Unt_076.tomostar --star-angpix-override 10 --coloring-labels OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/analyze.39/kmeans20/labels.pkl
tomodrgn subtomo2chimerax data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --mode volume --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/mapback_volume --tomoname Unt_076.tomostar --star-angpix-override 10 --vol-path OUT/backproject/warptools_70S_doseweight.mrc --vol-render-level 0.7
tomodrgn subtomo2chimerax data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --mode volumes --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/mapback_volumes --tomoname Unt_076.tomostar --star-angpix-override 10 --weights OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/weights.39.pkl --config OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/config.pkl --zfile OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --vol-render-level 0.7
tomodrgn subtomo2chimerax data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --mode volumes --outdir OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/mapback_volumes_cmaptab10 --tomoname Unt_076.tomostar --star-angpix-override 10 --weights OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/weights.39.pkl --config OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/config.pkl --zfile OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --vol-render-level 0.7 --coloring-labels OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/analyze.39/kmeans20/labels.pkl --colormap tab20
tomodrgn filter_star data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --starfile-type optimisation_set --tomo-id-col _rlnTomoName --ind data/warptools_test_ind_last2tomos.pkl -o OUT/warptools_70S_filtered_optimisation_set.star
tomodrgn filter_star data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --starfile-type optimisation_set --tomo-id-col _rlnTomoName --labels OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/analyze.39/kmeans20/labels.pkl --labels-sel 0 1 2 3 4 -o OUT/warptools_70S_filtered_by_labels_optimisation_set.star
tomodrgn eval_images data/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star --weights OUT/vae_warptools_70S_zdim8/weights.pkl -c OUT/vae_warptools_70S_zdim8/config.pkl --out-z OUT/vae_warptools_70S_zdim8/eval_images/z_all.pkl
tomodrgn graph_traversal OUT/vae_warptools_70S_zdim2/z.39.train.pkl --anchors 5 10 15 20 -o OUT/vae_warptools_70S_zdim2/graph_traversal --max-neighbors 20 --avg-neighbors 20
tomodrgn graph_traversal OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/z.39.train.pkl --anchors 5 10 15 20 -o OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/graph_traversal --max-neighbors 20 --avg-neighbors 10
tomodrgn pc_traversal OUT/vae_warptools_70S_zdim2/z.train.pkl -o OUT/vae_warptools_70S_zdim2/pc_traversal
tomodrgn pc_traversal OUT/vae_warptools_70S_zdim2/z.train.pkl -o OUT/vae_warptools_70S_zdim2/pc_traversal --use-percentile-spacing
tomodrgn pc_traversal OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/z.train.pkl -o OUT/vae_warptools_70S_zdim8_dosetiltweightmask_batchsize8/pc_traversal --use-percentile-spacing
tomodrgn view_config OUT/vae_warptools_70S_zdim2
tomodrgn cleanup OUT/vae_warptools_70S_zdim8 --weights --zfiles --volumes --test
tomodrgn cleanup OUT/vae_warptools_70S_zdim8 --weights --zfiles --volumes
"""
OUTPUT_OPTIONS = ("--output", "--outdir", "-o", "--out-z")
N_PARTICLES = 40  # 10 a tomogram, as the WarpTools set is named; anchors up to particle 20


def command_lines(text: str, epochs: int) -> list[list[str]]:
    """The lines as argument lists (after ``tomodrgn``), with 40 training epochs cut to ``epochs`` and the files of
    tomoDRGN's last epoch (``weights.39.pkl``, ``z.39.train.pkl``, ``analyze.39``) renamed to match."""
    last = epochs - 1
    lines = []
    for line in text.strip().splitlines():
        line = line.replace("--num-epochs 40", f"--num-epochs {epochs}")
        line = re.sub(r"\.39(?=[./])", f".{last}", line)
        lines.append(shlex.split(line)[1:])
    return lines


def inputs_from_earlier_lines(argv: list[str]) -> list[str]:
    """The ``OUT/…`` paths a line reads (not those it writes)."""
    outputs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS}
    return [a for a in argv if a.startswith("OUT/") and a not in outputs]


def expand(argv: list[str]) -> list[str]:
    """The shell's globbing of ``data/10076_class*_32.mrc``."""
    out = []
    for a in argv:
        out += sorted(glob.glob(a)) if "*" in a else [a]
    return out


def run_chain(tmp_path: Path, capsys, monkeypatch, text: str, epochs: int) -> None:
    make_tomodrgn_test_data(tmp_path, n_particles=N_PARTICLES)  # 10 a tomogram, as the WarpTools set is named
    monkeypatch.chdir(tmp_path)
    for argv in command_lines(text, epochs):
        for path in inputs_from_earlier_lines(argv):
            assert answers(Path(path)), ("tomodrgn " + " ".join(argv), f"{path} was not written by an earlier line")
        res = run_cli(capsys, *expand(argv))
        assert res.returncode == 0, ("tomodrgn " + " ".join(argv), res.stderr[-3000:])
        assert "Traceback" not in res.stderr


def check_commandtest_outputs(out: Path, n: int = N_PARTICLES) -> None:
    """What the Warp-style chain's lines wrote, in the shapes tomoDRGN users read."""
    import pickle

    import mrcfile
    import numpy as np
    import starfile

    for suffix in ("", "_half1", "_half2", "_filt"):
        assert (out / "backproject" / f"classE_sim{suffix}.mrc").is_file()
    with mrcfile.open(out / "10076_classE_16_sim.mrcs") as m:  # downsample --output: one stack of every image
        assert m.data.shape == (n * 10, 16, 16)
    names = starfile.read(out / "10076_classE_16_sim.star")["rlnImageName"]
    assert list(names[:2]) == ["000001@10076_classE_16_sim.mrcs", "000002@10076_classE_16_sim.mrcs"]
    with (out / "vae_both_sim_zdim2" / "z.train.pkl").open("rb") as f:  # z pickles: μ then log σ²
        mu, logvar = pickle.load(f), pickle.load(f)
    assert mu.shape == logvar.shape == (n, 2) and mu.dtype == np.float32
    assert len(list((out / "vae_both_sim_zdim2" / "eval_vol_allz").glob("vol_*.mrc"))) == n
    path = np.loadtxt(out / "vae_both_sim_zdim2" / "graph_traversal" / "path_particle_indices.txt", dtype=int)
    assert path[0] == 5 and path[-1] == 20 and {10, 15} <= set(path.tolist())
    assert np.loadtxt(out / "vae_both_sim_zdim2" / "pc_traversal" / "pc2.txt").shape == (10, 2)
    cxc = out / "vae_both_sim_zdim8_dosetiltweightmask_batchsize8" / "mapback_markers" / "tomo_both.tomostar"
    assert (cxc / "mapback.cxc").read_text().count("marker #1 position") == n
    kept = starfile.read(out / "10076_both_32_sim_vols_filtered_by_labels.star")
    assert len(kept) == n  # labels 0 and 1 kept: every particle
    assert len(starfile.read(out / "10076_both_32_sim_vols_filtered.star")) == 20  # first 10 and last 10
    with (out / "vae_classE_sim_zdim8" / "eval_images" / "z_all.pkl").open("rb") as f:
        assert pickle.load(f).shape == (n, 8)
    assert not list((out / "vae_classE_sim_zdim8").glob("weights.0.pt"))  # cleanup: only the last epoch is kept


@pytest.mark.parametrize("text", [COMMANDTEST, COMMANDTEST_WARPTOOLS], ids=["commandtest", "warptools"])
def test_published_command_lines_run_in_order(tmp_path, capsys, monkeypatch, text):
    run_chain(tmp_path, capsys, monkeypatch, text, epochs=2)
    if text is COMMANDTEST:
        check_commandtest_outputs(tmp_path / "OUT")


@pytest.mark.slow
@pytest.mark.parametrize("text", [COMMANDTEST, COMMANDTEST_WARPTOOLS], ids=["commandtest", "warptools"])
def test_published_command_lines_full_epochs(tmp_path, capsys, monkeypatch, text):
    run_chain(tmp_path, capsys, monkeypatch, text, epochs=40)


def test_all_107_lines_are_here():
    assert len(command_lines(COMMANDTEST, 2)) + len(command_lines(COMMANDTEST_WARPTOOLS, 2)) == 107
