import torch

from colorizer.data import MIN_MEAN_CHROMA, PhotoDataset, mean_chroma, scan_folder
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
