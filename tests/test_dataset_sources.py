"""Python datasets as sources: torchvision's ImageFolder against the folder it reads, a
torchgeo-style dataset of 4-band uint16 tensors, a DataLoader with workers, random transforms
inside a dataset, and a dataset that raises, through the API, the worker pool and the command."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

import chanstats
from chanstats.errors import BadImagesError, ChanstatsError

from .helpers.cli import run_cli

COUNT = 44  # more than one chunk: the worker pool runs


def write_classes(root, count: int = COUNT) -> None:
    rng = np.random.default_rng(5)
    for i in range(count):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(10 + i % 4, 12 + i % 3, 3), dtype=np.uint8)
        if i % 2:
            Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=85)
        else:
            Image.fromarray(pixels[:, :, 1]).save(folder / f"{i:03d}.png")


def statistics(result) -> tuple:
    config = result.to_dict()
    return config["exact"], config["running"], config["count"]


class Tiles(torch.utils.data.Dataset):
    """What torchgeo's datasets return: a dict with a 4-band uint16 image tensor, one raising."""

    def __init__(self, bad: int | None = None):
        self.bad = bad

    def __len__(self) -> int:
        return COUNT

    def __getitem__(self, index: int) -> dict:
        if index == self.bad:
            raise OSError(f"tile {index} is unreadable")
        generator = torch.Generator().manual_seed(index)
        image = torch.randint(0, 65536, (4, 6, 5), generator=generator, dtype=torch.int32).to(torch.uint16)
        return {"image": image, "mask": torch.zeros(6, 5)}


def test_image_folder_gives_the_folder_runs_numbers_bit_for_bit(tmp_path):
    write_classes(tmp_path)
    from_folder = statistics(chanstats.compute(str(tmp_path), workers=2, batch_size=8))
    assert statistics(chanstats.compute(ImageFolder(str(tmp_path)), workers=2, batch_size=8)) == from_folder
    assert statistics(chanstats.compute(ImageFolder(str(tmp_path)), workers=0, batch_size=8)) == from_folder


RANDOM_SPEC = [{"RandomResizedCrop": {"size": 8}}, "RandomHorizontalFlip", "ToImage",
               {"ToDtype": {"dtype": "float32", "scale": True}}]


def test_a_transform_on_image_folder_gives_the_folder_runs_numbers_bit_for_bit(tmp_path):
    write_classes(tmp_path)
    options = {"batch_size": 8, "transform": RANDOM_SPEC, "epochs": 2}
    from_folder = statistics(chanstats.compute(str(tmp_path), workers=2, **options))
    assert from_folder[0]["method"] == "float64" and from_folder[2]["samples"] == 2 * COUNT
    assert statistics(chanstats.compute(ImageFolder(str(tmp_path)), workers=2, **options)) == from_folder
    assert statistics(chanstats.compute(ImageFolder(str(tmp_path)), workers=0, **options)) == from_folder


def test_a_transform_takes_a_datasets_tensors_channels_first():
    config = chanstats.compute(Tiles(), workers=2, transform=[{"CenterCrop": {"size": 4}}]).to_dict()
    pixels = np.concatenate([Tiles()[i]["image"][:, 1:5, 0:4].numpy().astype(np.int64).reshape(4, -1).T
                             for i in range(COUNT)]) / 65535  # the central 4×4 of each 6×5 tile
    assert config["exact"]["method"] == "integer" and config["scale"] == 65535
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)


def test_a_transform_on_a_dataloader_is_refused_in_one_line(tmp_path):
    write_classes(tmp_path, 4)
    loader = torch.utils.data.DataLoader(ImageFolder(str(tmp_path), transform=v2.PILToTensor()), batch_size=2)
    with pytest.raises(ChanstatsError) as refused:
        chanstats.compute(loader, transform=RANDOM_SPEC)
    assert str(refused.value) == ("--transform applies to samples read by index, and a DataLoader is iterated as given "
                                  "(DataLoader): give the transform to its dataset instead")


def test_a_four_band_uint16_dataset_takes_the_exact_integer_path(tmp_path):
    result = chanstats.compute(Tiles(), workers=2)
    config = result.to_dict()
    pixels = np.concatenate([Tiles()[i]["image"].numpy().reshape(4, -1).T for i in range(COUNT)]) / 65535
    assert config["exact"]["method"] == "integer" and config["scale"] == 65535 and len(config["channels"]) == 4
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)
    assert config["options"]["dataset"] == "Tiles" and config["options"]["dataset_kind"] == "map-style dataset"


def test_a_sample_that_raises_is_named_by_index(tmp_path):
    with pytest.raises(BadImagesError) as failed:
        chanstats.compute(Tiles(bad=13), workers=2)
    assert "Tiles::index 13: the dataset raised OSError: tile 13 is unreadable" in str(failed.value)
    skipped = chanstats.compute(Tiles(bad=13), workers=2, on_error="skip").to_dict()
    assert skipped["skipped"] == [{"path": "Tiles::index 13", "error": "the dataset raised OSError: tile 13 is unreadable"}]
    assert skipped["count"]["images"] == COUNT - 1


class RandomCrops(torch.utils.data.Dataset):
    """A dataset with a random transform of its own, drawing from torch's global generator."""

    def __init__(self):
        self.crop = v2.RandomCrop(4)

    def __len__(self) -> int:
        return COUNT

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(index)
        return self.crop(torch.randint(0, 256, (3, 9, 9), generator=generator, dtype=torch.uint8)), index


def test_random_transforms_inside_a_dataset_are_seeded_per_sample_for_any_workers():
    runs = [chanstats.compute(RandomCrops(), workers=w, epochs=3, seed=4).to_dict() for w in (0, 2)]
    assert runs[0] == runs[1]
    other_seed = chanstats.compute(RandomCrops(), workers=2, epochs=3, seed=5).to_dict()
    assert other_seed["exact"] != runs[0]["exact"]


def test_a_dataloader_with_workers_is_iterated_as_given(tmp_path):
    write_classes(tmp_path)
    to_tensor = v2.Compose([v2.Resize((8, 8)), v2.PILToTensor()])
    dataset = ImageFolder(str(tmp_path), transform=to_tensor)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2)
    config = chanstats.compute(loader).to_dict()
    pixels = np.concatenate([dataset[i][0].numpy().reshape(3, -1).T for i in range(COUNT)]) / 255
    assert config["options"]["dataset_kind"] == "DataLoader" and config["count"]["images"] == COUNT
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)


def test_an_ambiguous_array_shape_states_both_readings():
    samples = [np.zeros((3, 16, 16), dtype=np.uint8)] * 4
    with pytest.raises(ChanstatsError) as failed:
        chanstats.compute(samples, workers=0)
    assert "(H, W, C) with 16 channels, or as (C, H, W) with 3 channels" in str(failed.value)
    config = chanstats.compute(samples, workers=0, layout="CHW").to_dict()
    assert config["channels"] == ["R", "G", "B"] and config["count"]["pixels"] == 4 * 256


def test_the_command_measures_a_dataset_spec_and_check_replays_it(tmp_path):
    (tmp_path / "tiles.py").write_text(textwrap.dedent('''
        import torch

        class Tiles(torch.utils.data.Dataset):
            def __len__(self):
                return 44

            def __getitem__(self, index):
                generator = torch.Generator().manual_seed(index)
                return {"bands": torch.randint(0, 256, (2, 5, 5), generator=generator, dtype=torch.int32).to(torch.uint8)}
    '''))
    config_path = tmp_path / "stats.json"
    result = run_cli("compute", "--dataset", "tiles.py:Tiles", "--key", "bands", "--workers", "2", "-q", "-o", str(config_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(config_path.read_text())
    assert config["options"]["dataset"] == "tiles.py:Tiles" and config["options"]["key"] == "bands"
    assert config["count"]["images"] == 44 and config["exact"]["method"] == "integer"
    check = run_cli("check", "--against", str(config_path), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    missing = run_cli("compute", "--dataset", "tiles.py:Tiles", "-q", cwd=tmp_path)
    assert missing.returncode == 2 and "the sample is a dict without 'image' (keys: bands)" in missing.stderr


class Flat(torch.utils.data.Dataset):
    """Ten small uint8 images of distinct brightness: batch order visibly moves BatchNorm's buffers."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(index)
        return torch.randint(20 * index, 20 * index + 60, (3, 5, 4), generator=generator, dtype=torch.int32).to(torch.uint8)


def test_batches_loader_matches_a_real_batchnorm_fed_the_loaders_batches():
    loader = torch.utils.data.DataLoader(Flat(), batch_size=4)  # batches of 4, 4 and 2
    config = chanstats.compute(loader, batches="loader", momentum=0.1).to_dict()
    bn = torch.nn.BatchNorm2d(3, momentum=0.1).double().train()
    with torch.no_grad():
        for batch in loader:
            bn(batch.double() / 255)
    assert config["running"]["batch_size"] == 4 and config["running"]["batches"] == 3
    np.testing.assert_allclose(config["running"]["mean"], bn.running_mean.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(config["running"]["var"], bn.running_var.numpy(), rtol=0, atol=1e-12)
    seeded = chanstats.compute(loader, momentum=0.1).to_dict()  # a seeded shuffle into one batch of 64
    assert seeded["running"]["mean"] != config["running"]["mean"]


def test_batches_loader_needs_a_dataloader():
    with pytest.raises(ChanstatsError, match="follows a DataLoader's own batches"):
        chanstats.compute(Flat(), batches="loader", workers=0)


def test_signed_integer_samples_take_the_exact_path_with_their_scale():
    rng = np.random.default_rng(3)
    samples = [rng.integers(-2000, 3000, size=(6, 7, 2), dtype=np.int16) for _ in range(5)]
    config = chanstats.compute(samples, workers=0, scale=1000).to_dict()
    pooled = np.concatenate([s.reshape(-1, 2) for s in samples]).astype(np.int64)
    assert config["exact"]["method"] == "integer" and config["dtype"] == "int16"
    sums, squares, n = pooled.sum(axis=0), (pooled * pooled).sum(axis=0), pooled.shape[0]
    assert config["exact"]["mean_raw"] == [float(int(s) / n) for s in sums]
    np.testing.assert_allclose(config["exact"]["mean"], pooled.mean(axis=0) / 1000, rtol=1e-15)
    np.testing.assert_allclose(config["exact"]["std_raw"], [np.sqrt((n * int(q) - int(s) ** 2) / n**2) for s, q in zip(sums, squares)], rtol=1e-15)


class NamedTiles(Tiles):
    """Tiles with ids of their own, as COCO-style datasets keep them."""

    def __init__(self, ids):
        super().__init__()
        self.ids = ids


def test_per_image_rows_are_named_by_the_datasets_own_ids_where_it_has_them(tmp_path):
    write_classes(tmp_path)
    folder = ImageFolder(str(tmp_path))
    result = chanstats.compute(folder, workers=2)
    assert list(result.per_image.paths) == [f"ImageFolder::{path}" for path, _ in folder.samples]
    files = chanstats.compute(str(tmp_path), workers=2)
    by_file = {path: row for row, path in enumerate(files.per_image.paths)}
    order = [by_file[path] for path, _ in folder.samples]
    np.testing.assert_array_equal(result.per_image.mean, files.per_image.mean[order])
    ids = [f"tile-{i:02d}" for i in range(COUNT)]
    named = chanstats.compute(NamedTiles(ids), workers=2)
    assert list(named.per_image.paths) == [f"NamedTiles::{i}" for i in ids]
    subset = chanstats.compute(torch.utils.data.Subset(NamedTiles(ids), [5, 3]), workers=0)
    assert list(subset.per_image.paths) == ["Subset::tile-05", "Subset::tile-03"]
    repeated = chanstats.compute(NamedTiles(["same"] * COUNT), workers=0)  # not ids: named by index
    assert list(repeated.per_image.paths) == [f"NamedTiles::index {i}" for i in range(COUNT)]


def test_compare_takes_a_dataset_spec_and_gives_the_numpy_stacks_table(tmp_path):
    (tmp_path / "tiles.py").write_text(textwrap.dedent('''
        import numpy as np
        import torch

        STACK = np.random.default_rng(7).integers(0, 256, size=(44, 6, 5, 3), dtype=np.uint8)

        class Tiles(torch.utils.data.Dataset):
            def __len__(self):
                return len(STACK)

            def __getitem__(self, index):
                return {"pixels": torch.from_numpy(STACK[index]).permute(2, 0, 1)}
    '''))
    stack = np.random.default_rng(7).integers(0, 256, size=(44, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "stack.npy", stack)
    options = ("--workers", "2", "--batch-size", "8,16", "--transform", "[{RandomCrop: {size: 4}}]", "--seeds", "3")
    from_dataset = run_cli("compare", "--dataset", "tiles.py:Tiles", "--key", "pixels", *options, cwd=tmp_path)
    assert from_dataset.returncode == 0, from_dataset.stderr
    # The stack in this process (its runs give the same bytes for any --workers: test_numpy_sources.py).
    from_stack = run_cli("compare", "stack.npy", *options, "--workers", "0", cwd=tmp_path)
    assert from_stack.returncode == 0, from_stack.stderr
    assert from_dataset.stdout == from_stack.stdout and "torch      16     none     3 B" in from_stack.stdout
    untransformed = run_cli("compare", "--dataset", "tiles.py:Tiles", "--key", "pixels", "--workers", "2", cwd=tmp_path)
    mean = stack.reshape(-1, 3).mean(axis=0) / 255
    assert untransformed.stdout.startswith(f"exact mean/std: R {mean[0]:.6f}/")
    neither = run_cli("compare", cwd=tmp_path)
    assert neither.returncode == 2 and "give PATHS or --dataset MODULE:ATTR (one of them)" in neither.stderr
