import torch

from cnnlab.data import Batches, ImageDataset, kfold_indices
from cnnlab.data.augment import RandomShift


def tiny(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ImageDataset("tiny", "train", images, torch.arange(n), tuple("0123456789"[:n]), (0.0,), (1.0,))


def test_batches_cover_each_image_once_and_are_seeded():
    ds = tiny()
    seen = []
    b = Batches(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(b) == 4
    for x, y in b:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 4, 4)
        seen += y.tolist()
    assert sorted(seen) == list(range(10))
    again = [y.tolist() for _, y in Batches(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert sum(again, []) == seen


def test_normalisation_and_padding():
    ds = tiny()
    ds.mean, ds.std = (0.5,), (0.25,)
    x, y = next(iter(Batches(ds, 10, pad=2)))
    assert x.shape == (10, 1, 8, 8)
    # Pixel value v/255 normalised: (v/255 - 0.5) / 0.25; the padding is zero before normalising.
    assert torch.allclose(x[3, 0, 2, 2], torch.tensor((3 / 255 - 0.5) / 0.25))
    assert torch.allclose(x[3, 0, 0, 0], torch.tensor((0 - 0.5) / 0.25))


def test_drop_last():
    assert len(Batches(tiny(), 3, drop_last=True)) == 3


def test_random_shift_moves_content_without_scaling():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    out = RandomShift(2)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all(out.sum((1, 2, 3)) == 1)  # the dot stays whole
    rows = out[:, 0].amax(2).argmax(1)
    assert set(rows.tolist()) <= {2, 3, 4, 5, 6} and len(set(rows.tolist())) > 1


def test_kfold_partitions():
    folds = kfold_indices(10, 3, seed=0)
    vals = torch.cat([v for _, v in folds]).sort().values
    assert torch.equal(vals, torch.arange(10))
    for tr, va in folds:
        assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 10


def test_decoding_workers_fork_from_a_clean_server_once_torch_distributed_has_started(tmp_path):
    """After init_process_group the communication threads exist; a plain fork could inherit a
    held lock (pytorch/pytorch#75147), so workers then start from forkserver."""
    import torch.distributed as dist

    from cnnlab.data.batches import worker_context

    assert worker_context(0) is None and worker_context(2) is None
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert worker_context(2) == "forkserver" and worker_context(0) is None
    finally:
        dist.destroy_process_group()
