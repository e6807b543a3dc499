"""Random crop and flip (regbench/regularizers/augment.py): the crop's structure, its padding
against torchvision's RandomCrop pixel for pixel, its determinism, the flip's rate."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from regbench.regularizers.augment import augment


def test_augment_shape_and_crop_structure():
    n, c, h, w = 64, 2, 16, 16
    pad = h // 8
    x = torch.ones(n, c, h, w)
    out = augment(x, torch.Generator().manual_seed(0), hflip=False)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    zero = out == 0
    # zeros only within `pad` of the borders: the inner region is always ones
    assert (out[:, :, pad : h - pad, pad : w - pad] == 1).all()
    # zero rows/columns are whole rows/columns (a shift, not noise), at most pad of them
    for img in zero[:, 0]:
        rows, cols = img.all(1), img.all(0)
        assert torch.equal(img, rows[:, None] | cols[None, :])
        assert rows.sum() <= pad and cols.sum() <= pad
    assert zero.any()  # some images were shifted
    assert (~zero).all(dim=(1, 2, 3)).any()  # and (2p+1)^2 offsets include no shift at all


def test_augment_is_a_crop_of_the_padded_image_with_one_offset_per_image():
    n, c, h, w = 200, 3, 8, 8
    pad = max(1, h // 8)
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # all distinct, non-zero
    out = augment(x, torch.Generator().manual_seed(1), hflip=False)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = []
    for i in range(n):
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(found) == 1, i  # same offset for every channel of the image
        offsets.append(found[0])
    counts = {o: offsets.count(o) for o in set(offsets)}
    assert len(counts) == (2 * pad + 1) ** 2  # every offset is drawn
    assert max(counts.values()) < n / 4


def test_augment_pads_with_the_normalised_zero_the_training_mean_where_torchvision_pads_black():
    """reg.augment crops the normalised batch, padded with 0: a padded pixel is each channel's
    training mean. torchvision's RandomCrop(padding=p) on the raw image (before Normalize, as its
    recipes place it) pads with fill=0, black. On the same image and offset the two agree on
    every pixel inside the image and differ exactly on the padded ones (0 against -mean/std);
    regbench's is torchvision's RandomCrop with fill=mean before Normalize, or RandomCrop after
    Normalize, pixel for pixel."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    n, c, h, w = 24, 3, 16, 16
    pad = max(1, h // 8)
    raw = torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)  # no black
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(-1, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(-1, 1, 1)

    def normalise(images):  # Data.prepare's arithmetic
        return images.float().div(255.0).sub(mean).div(std)

    out = augment(normalise(raw), torch.Generator().manual_seed(3), hflip=False)

    def torchvision_crop(image, top, left, fill=0):  # RandomCrop(h, padding=pad, fill=fill) at (top, left)
        return TF.crop(TF.pad(image, [pad], fill=fill), top, left, h, w)

    # RandomCrop is that pad-then-crop, black by default: its own draw is one of the offsets
    offsets = [(t, l) for t in range(2 * pad + 1) for l in range(2 * pad + 1)]
    torch.manual_seed(1)
    drawn = v2.RandomCrop(h, padding=pad)(raw[0])
    assert any(torch.equal(drawn, torchvision_crop(raw[0], *o)) for o in offsets)

    padded = 0
    for i in range(n):
        black = {o: normalise(torchvision_crop(raw[i], *o)) for o in offsets}
        # the offset regbench drew: the one whose crop agrees with torchvision's inside the image
        (offset,) = [o for o in offsets
                     if torch.equal(out[i][_inside(o, pad, c, h, w)], black[o][_inside(o, pad, c, h, w)])]
        inside = _inside(offset, pad, c, h, w)
        assert (out[i][~inside] == 0).all()  # regbench: 0, the channel's training mean
        assert torch.equal(black[offset][~inside], (-mean / std).expand(c, h, w)[~inside])  # torchvision: black
        # regbench's crop is RandomCrop filling with the mean before Normalize, and RandomCrop after Normalize
        with_mean = torchvision_crop(raw[i].float() / 255.0, *offset, fill=mean.flatten().tolist())
        assert torch.equal(out[i], with_mean.sub(mean).div(std))
        assert torch.equal(out[i], torchvision_crop(normalise(raw[i]), *offset))
        padded += int((~inside).any())
    assert padded > n // 2  # most offsets pad (only the centred one does not)


def _inside(offset, pad, c, h, w):
    """The pixels of a (top, left) crop of the padded image that lie inside the image."""
    from torchvision.transforms.v2 import functional as TF

    return TF.crop(TF.pad(torch.ones(1, h, w), [pad]), *offset, h, w).bool().expand(c, h, w)


def test_augment_is_deterministic_for_a_seeded_generator():
    x = torch.randn(32, 3, 16, 16)
    before = x.clone()
    a = augment(x, torch.Generator().manual_seed(5), hflip=True)
    b = augment(x, torch.Generator().manual_seed(5), hflip=True)
    c = augment(x, torch.Generator().manual_seed(6), hflip=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, before)  # the input is not modified


def _column_centre(batch: torch.Tensor) -> torch.Tensor:
    """Mean column index of each image's mass."""
    cols = torch.arange(batch.shape[-1], dtype=batch.dtype)
    return (batch * cols).sum(dim=(1, 2, 3)) / batch.sum(dim=(1, 2, 3))


def test_augment_flips_about_half_the_images():
    n, h, w = 2000, 16, 16
    x = torch.zeros(n, 1, h, w)
    x[..., : w // 2] = 1.0  # mass on the left: a flip moves it to the right
    flipped = _column_centre(augment(x, torch.Generator().manual_seed(0), hflip=True)) > (w - 1) / 2
    assert 0.45 < flipped.float().mean().item() < 0.55
    never = _column_centre(augment(x, torch.Generator().manual_seed(0), hflip=False)) > (w - 1) / 2
    assert not never.any()
