import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from colorizer.data import MIN_MEAN_CHROMA, PhotoDataset, hold_out, mean_chroma, scan_folder
from colorizer.errors import UserError
from tests.conftest import photo


def test_scan_sorts_colour_gray_and_corrupt(photo_dir, capsys):
    scan = scan_folder(photo_dir, progress=False)
    assert len(scan.colour) == 6
    assert [p.name for p in scan.gray] == ["gray.jpg"]
    assert [p.name for p in scan.corrupt] == ["broken.jpg"]
    assert "broken.jpg" in capsys.readouterr().err
    assert "dropped 1 without colour, 1 unreadable" in scan.summary()


def test_scan_limit_spreads_over_folders(photo_dir):
    scan = scan_folder(photo_dir, limit=4, progress=False)
    folders = {p.parent.name for p in scan.colour + scan.gray + scan.corrupt}
    assert folders == {"class0", "class1"}


def test_mean_chroma_separates_gray_from_colour():
    assert mean_chroma(photo().convert("L")) < 0.5
    assert mean_chroma(photo()) > MIN_MEAN_CHROMA * 3


def test_dataset_crops_to_square_uint8(photo_dir):
    paths = scan_folder(photo_dir, progress=False).colour
    train = PhotoDataset(paths, 32, augment=True)
    val = PhotoDataset(paths, 32, augment=False)
    item = train[0]
    assert item.shape == (3, 32, 32) and item.dtype == torch.uint8
    assert torch.equal(val[1], val[1])  # centre crops are deterministic


def _halves(width: int = 64) -> Image.Image:
    """Left half red, right half blue: a crop shows both colours unless it zooms into one half."""
    image = Image.new("RGB", (width, width), (220, 30, 30))
    image.paste((30, 30, 220), (width // 2, 0, width, width))
    return image


def _one_colour_crops(dataset: PhotoDataset, draws: int = 60) -> int:
    torch.manual_seed(0)
    crops = [dataset[0] for _ in range(draws)]
    return sum(bool((crop[0].int() > crop[2].int()).all() or (crop[0].int() < crop[2].int()).all()) for crop in crops)


def test_random_scale_crops_zoom_in(tmp_path):
    path = tmp_path / "halves.png"
    _halves().save(path)
    whole = PhotoDataset([path], 32, augment=True, min_crop_area=1.0)
    zoom = PhotoDataset([path], 32, augment=True, min_crop_area=0.1)
    assert _one_colour_crops(whole) == 0
    assert _one_colour_crops(zoom) > 0
    assert zoom[0].shape == (3, 32, 32) and zoom[0].dtype == torch.uint8


def test_large_photos_are_reduced_before_cropping(tmp_path):
    path = tmp_path / "large.png"
    _halves(1000).save(path)
    dataset = PhotoDataset([path], 32, augment=True, min_crop_area=0.25)
    assert dataset[0].shape == (3, 32, 32)
    dataset.transform = lambda image: image  # what the crop sees: shrunk, yet with room to zoom
    assert 64 <= min(dataset[0].size) < 128


def test_crop_area_must_be_a_fraction(tmp_path):
    with pytest.raises(UserError, match="fraction"):
        PhotoDataset([], 32, augment=True, min_crop_area=0)


def test_hold_out_is_a_stable_share_of_the_photos():
    root = Path("photos")
    paths = [root / f"class{c}" / f"{i:03d}.jpg" for c in range(4) for i in range(250)]
    train, held = hold_out(paths, root, 0.1)
    assert 70 <= len(held) <= 130 and len(train) + len(held) == len(paths)
    assert not set(train) & set(held) and sorted(train + held) == sorted(paths)
    assert all(len([p for p in held if p.parent.name == f"class{c}"]) > 10 for c in range(4))
    # a photo's side depends on its own path only: adding or dropping others moves no photo
    fewer_train, fewer_held = hold_out(paths[::3], root, 0.1)
    assert set(fewer_held) == set(held) & set(paths[::3]) and set(fewer_train) == set(train) & set(paths[::3])
    # and on the path under the root, not on where the root lies
    moved = [Path("elsewhere") / p.relative_to(root) for p in paths]
    assert [p.relative_to("elsewhere") for p in hold_out(moved, "elsewhere", 0.1)[1]] == [
        p.relative_to(root) for p in held]


@pytest.mark.parametrize("name, sides", [("a.jpg", "leaves 1 of 1 photos to train on and 0"),
                                         ("d.jpg", "leaves 0 of 1 photos to train on and 1")])
def test_hold_out_refuses_an_empty_side(name, sides):
    assert (zlib.crc32(name.encode()) < 2**31) == (" 0 of" in sides)  # which side the hash puts it on
    with pytest.raises(UserError, match=sides):
        hold_out([Path("photos", name)], "photos", 0.5)
