"""--stage=sample: label maps with MM-WHS codes on the pre-training grid and coarse CT in HU, as NIfTI."""

import os

import nibabel as nib
import numpy as np
import pytest

from fedsim_tf.errors import UserInputError
from fedsim_tf.stages import sample
from tests.stages.pretrain_fixtures import tiny_run, tiny_targets


def test_sample_writes_labelled_volumes_with_the_right_affine(tmp_path):
    targets = tiny_targets(coarse_size=4, count=2)
    tiny = tiny_run(str(tmp_path), coarse_size=4, steps=1, batch_size=1, views=4, targets=targets)
    tiny.train(targets)
    out = tmp_path / "samples"
    written = sample.write_samples(tiny.run, str(out), seed=7, count=2)
    assert [os.path.basename(p) for p in written] == ["sample_0000_label.nii.gz", "sample_0001_label.nii.gz"]
    label_img = nib.load(written[0])
    labels = np.asarray(label_img.dataobj)
    assert labels.shape == (16, 16, 16) and label_img.get_data_dtype() == np.uint16
    # The generation grid: 10 mm voxels centred on the SSM mean (the origin), so voxel 0 is at -75 mm.
    np.testing.assert_allclose(label_img.affine[:3, 3], [-75.0, -75.0, -75.0], atol=1e-6)
    np.testing.assert_allclose(np.diag(label_img.affine)[:3], [10.0, 10.0, 10.0])
    assert set(np.unique(labels)) <= {0, 205, 420, 500, 550, 600, 820, 850}
    assert {205, 500}.issubset(set(np.unique(labels)))  # myocardium and LV blood pool are present
    ct_img = nib.load(str(out / "sample_0001_coarse_ct.nii.gz"))
    ct = np.asarray(ct_img.dataobj)
    assert ct.shape == (4, 4, 4) and ct.min() >= -200.0 and ct.max() <= 800.0
    np.testing.assert_allclose(np.diag(ct_img.affine)[:3], [40.0, 40.0, 40.0])
    # Coarse voxel 0 is the centre of the first 4^3 block of 10 mm voxels: -75 + 15 = -60 mm.
    np.testing.assert_allclose(ct_img.affine[:3, 3], [-60.0, -60.0, -60.0], atol=1e-6)
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary files


def test_sample_without_pretraining_is_a_clear_error(tmp_path):
    tiny = tiny_run(str(tmp_path), coarse_size=4, steps=1, batch_size=1)
    with pytest.raises(UserInputError, match="no pretrain model for fold0_seed7_site_a-L2_site_b-L1 .*run "
                                             "--stage=pretrain with the same --fold, --label_size, --seed and --single_site first"):
        sample.write_samples(tiny.run, str(tmp_path / "samples"), seed=7, count=1)
    assert not (tmp_path / "samples").exists()
