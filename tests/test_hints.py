"""Colour hints: simulated for training, taken from users, and followed by a hint-capable network."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from colorizer.cli import main
from colorizer.color import lab_to_rgb, normalize_l, rgb_to_lab
from colorizer.decode import annealed_mean
from colorizer.errors import UserError
from colorizer.hints import (
    AB_SCALE,
    MAX_PATCH,
    NO_HINT_DISTANCE,
    geodesic_hints,
    hint_nearness,
    local_hint_logits,
    pool_hints,
    rotate_hue,
    sample_hint_counts,
    simulate_hints,
    user_hint_map,
)
from colorizer.images import to_rgb_tensor
from colorizer.infer import Colorizer
from colorizer.loss import encode_targets, rebalanced_cross_entropy
from colorizer.models import build_model
from tests.conftest import TINY_HINT_OPTIONS, photo, save_tiny_hint_model


def ab_of_rgb(rgb: torch.Tensor) -> torch.Tensor:
    return rgb_to_lab(rgb[:, :, None, None])[:, 1:, 0, 0]


def test_hint_counts_follow_the_paper_geometric_law_with_a_share_of_hintless_photos():
    counts = sample_hint_counts(20000, torch.Generator().manual_seed(0))
    assert 0.47 < (counts == 0).float().mean() < 0.53
    hinted = counts[counts > 0].double()
    assert hinted.min() == 1
    assert 7.5 < hinted.mean() < 8.5  # 1 + Geometric(1/8) has mean 8


def test_every_photo_gets_hints_when_the_hinted_share_is_one():
    counts = sample_hint_counts(1000, torch.Generator().manual_seed(0), no_hint_share=0.0)
    assert counts.min() >= 1


def test_simulated_hints_reveal_patch_means_of_the_true_colours():
    g = torch.Generator().manual_seed(1)
    ab = torch.rand(3, 2, 24, 32, generator=g) * 100 - 50
    hints = simulate_hints(ab, [0, 1, 5], torch.Generator().manual_seed(2))
    assert hints.shape == (3, 3, 24, 32)
    assert hints[0].abs().sum() == 0  # no hints: all zeros
    mask = hints[1, 2] > 0
    rows, cols = mask.nonzero(as_tuple=True)
    side = int(rows.max() - rows.min() + 1)
    assert 1 <= side <= MAX_PATCH and mask.sum() == side * side  # one square patch
    expected = ab[1][:, mask].mean(1) / AB_SCALE
    torch.testing.assert_close(hints[1, :2][:, mask], expected[:, None].expand(2, side * side))
    assert (hints[1, :2][:, ~mask] == 0).all()
    again = simulate_hints(ab, [0, 1, 5], torch.Generator().manual_seed(2))
    assert torch.equal(hints, again)  # a fixed seed gives the same hints


def test_pooling_keeps_a_one_pixel_hint_at_full_strength():
    hints = torch.zeros(1, 3, 8, 8)
    hints[0, :, 5, 6] = torch.tensor([0.4, -0.2, 1.0])
    pooled = pool_hints(hints, 4)
    assert pooled.shape == (1, 3, 2, 2)
    torch.testing.assert_close(pooled[0, :, 1, 1], torch.tensor([0.4, -0.2, 1.0]))
    assert pooled[0, :, 0, 0].abs().sum() == 0


def test_a_hint_reaches_its_whole_region_before_crossing_an_edge():
    # two flat regions (L 30 left, 80 right), one hint in each; the left hint is nearer in plain
    # distance to the right region's first columns, yet each region takes its own hint's colour
    lightness = torch.full((1, 1, 12, 16), 30.0)
    lightness[..., 6:] = 80.0
    hints = torch.zeros(1, 3, 12, 16)
    hints[0, :, 6, 5] = torch.tensor([0.5, 0.1, 1.0])
    hints[0, :, 6, 15] = torch.tensor([-0.3, -0.4, 1.0])
    nearest = geodesic_hints(lightness, hints)
    assert (nearest[0, 0, :, :6] == 0.5).all() and (nearest[0, 0, :, 6:] == -0.3).all()
    assert nearest[0, 2, 6, 5] == 0 and nearest[0, 2, 6, 15] == 0
    # within a region, distance is path length; the far corner of the left region is 6 steps away
    torch.testing.assert_close(nearest[0, 2, 0, 0], torch.tensor(5 * 2**0.5 + 1))


def test_without_hints_every_cell_is_unreached():
    nearest = geodesic_hints(torch.rand(2, 1, 8, 8) * 100, torch.zeros(2, 3, 8, 8))
    assert (nearest[:, :2] == 0).all() and (nearest[:, 2] == NO_HINT_DISTANCE).all()


def test_rotating_the_hue_keeps_chroma_and_turns_each_photo_by_its_angle():
    ab = torch.randn(2, 2, 4, 5) * 30
    turned = rotate_hue(ab, torch.tensor([0.0, torch.pi / 2]))
    torch.testing.assert_close(turned[0], ab[0])
    torch.testing.assert_close(turned.norm(dim=1), ab.norm(dim=1))
    torch.testing.assert_close(turned[1], torch.stack([-ab[1, 1], ab[1, 0]]))  # a quarter turn: (a, b) -> (-b, a)


def test_user_hints_land_where_the_user_clicked():
    red = [220, 20, 20]
    hint_map = user_hint_map([{"x": 150, "y": 20, "rgb": red}], (200, 100), (16, 16), ab_of_rgb)
    covered = hint_map[0, 2].nonzero().tolist()
    assert [3, 12] in covered and len(covered) == 9  # row 20/100*16 = 3, column 150/200*16 = 12; a 3x3 patch
    red_ab = ab_of_rgb(torch.tensor([red]) / 255.0)[0] / AB_SCALE
    torch.testing.assert_close(hint_map[0, :2, 3, 12], red_ab)
    wide = user_hint_map([{"x": 150, "y": 20, "rgb": red, "radius": 25}], (200, 100), (16, 16), ab_of_rgb)
    assert wide[0, 2].sum() == 25  # radius 25 px = 2 cells of the map: 5x5


@pytest.mark.parametrize("hint, message", [
    ({"x": 250, "y": 20, "rgb": [1, 2, 3]}, "hint 2: x = 250 lies outside the photo"),
    ({"x": 10, "y": -1, "rgb": [1, 2, 3]}, "hint 2: y = -1 lies outside the photo"),
    ({"x": 10, "y": 20, "rgb": [1, 2, 300]}, "hint 2: rgb must be three numbers from 0 to 255"),
    ({"x": 10, "y": 20, "rgb": "red"}, "hint 2: rgb must be three numbers"),
    ({"x": True, "y": 20, "rgb": [1, 2, 3]}, "hint 2: x = True lies outside"),
    ({"y": 20, "rgb": [1, 2, 3]}, "hint 2: missing x"),
    ([1, 2], "hint 2: expected an object"),
])
def test_bad_hints_are_one_line_errors_naming_the_hint(hint, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        user_hint_map([{"x": 1, "y": 1, "rgb": [0, 0, 0]}, hint], (200, 100), (16, 16), ab_of_rgb)


def test_without_hints_a_hint_model_is_exactly_the_automatic_one():
    torch.manual_seed(0)
    model = build_model("effnet-lite0", **TINY_HINT_OPTIONS).eval()
    lightness = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(lightness), model(lightness, torch.zeros(2, 3, 64, 64)))
        hinted = torch.zeros(2, 3, 64, 64)
        hinted[:, :, 30, 30] = torch.tensor([0.5, 0.5, 1.0])
        assert not torch.equal(model(lightness), model(lightness, hinted))


def test_hint_propagation_starts_as_the_hint_model_it_extends():
    torch.manual_seed(0)
    base = build_model("effnet-lite0", **TINY_HINT_OPTIONS).eval()
    extended = build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True).eval()
    missing, unexpected = extended.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and {key.split(".")[0] for key in missing} == {
        "propagated_to_encoder", "propagated_to_levels", "propagation_gate"}
    lightness = torch.rand(2, 1, 64, 64) * 2 - 1
    hinted = torch.zeros(2, 3, 64, 64)
    hinted[:, :, 30, 30] = torch.tensor([0.5, 0.5, 1.0])
    with torch.no_grad():
        assert torch.equal(extended(lightness, torch.zeros(2, 3, 64, 64)), base(lightness))
        # with hints, only the small initial gate adds the propagated colour
        assert (extended(lightness, hinted) - base(lightness, hinted)).abs().max() < 0.1
    with pytest.raises(UserError, match="hint_propagation needs hint_inputs"):
        build_model("effnet-lite0", pretrained=False, hint_propagation=True)


def test_propagation_carries_a_hint_over_its_region():
    """With the gate open, the propagated colour dominates every cell of the hinted flat region and
    stops at the edge: the other region keeps the automatic colour."""
    torch.manual_seed(0)
    model = build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True).eval()
    torch.nn.init.constant_(model.propagation_gate.bias, 20.0)
    lightness = torch.full((1, 1, 64, 64), -0.4)
    lightness[..., 32:] = 0.6
    hinted = torch.zeros(1, 3, 64, 64)
    hinted[0, :, 30, 4] = torch.tensor([60 / AB_SCALE, 40 / AB_SCALE, 1.0])
    with torch.no_grad():
        ab = annealed_mean(model(lightness, hinted))[0]
        automatic = annealed_mean(model(lightness))[0]
    target = torch.tensor([60.0, 40.0])[:, None, None]
    left, right = (slice(None), slice(None), slice(0, 7)), (slice(None), slice(None), slice(9, 16))
    assert (ab[left] - target).norm(dim=0).max() < 15
    assert (ab[right] - automatic[right]).norm(dim=0).max() < (ab[left] - automatic[left]).norm(dim=0).min()


def test_a_longer_propagation_reach_carries_a_hint_further():
    """With the gate open, the far end of a long flat strip (60 cells from the hint) takes the hinted
    colour when the network's far propagation scale is long, and keeps its own when it is the default;
    a reach no longer than the near scale is refused."""
    torch.manual_seed(0)
    short = build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True).eval()
    long = build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True, propagation_reach=64).eval()
    torch.nn.init.constant_(short.propagation_gate.bias, 20.0)
    long.load_state_dict(short.state_dict())
    lightness = torch.zeros(1, 1, 32, 256)
    hinted = torch.zeros(1, 3, 32, 256)
    hinted[0, :, 16, 2] = torch.tensor([60 / AB_SCALE, 40 / AB_SCALE, 1.0])
    target = torch.tensor([60.0, 40.0])
    with torch.no_grad():
        far_end = [annealed_mean(model(lightness, hinted))[0, :, :, -4:].mean((1, 2)) for model in (short, long)]
    assert (far_end[1] - target).norm() < 15 < (far_end[0] - target).norm()
    with pytest.raises(UserError, match="propagation_reach must be"):
        build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True, propagation_reach=2)
    with pytest.raises(UserError, match="propagation_reach needs hint_propagation"):
        build_model("effnet-lite0", **TINY_HINT_OPTIONS, propagation_reach=40)


def test_a_model_without_hint_inputs_refuses_hints(tiny_checkpoint):
    colorizer = Colorizer.load(tiny_checkpoint)
    assert not colorizer.takes_hints
    with pytest.raises(UserError, match="takes no colour hints"):
        colorizer.colorize(photo(40, 30), hints=[{"x": 5, "y": 5, "rgb": [255, 0, 0]}])
    assert colorizer.colorize(photo(40, 30), hints=[]).size == (40, 30)


def hint_trained_model(run, steps: int = 100):
    """The tiny hint model after a short training on flat gray photos whose only colour cue is the hint:
    each photo is one random colour, which the network can only learn from its hints."""
    model = save_tiny_hint_model(run).train()
    # 100 steps at this rate take the hinted pixels' colour errors from 30-44 ab units (untrained) to
    # under 9 on six seeds tried (0.5 to 4.3 on this one), with or without AVX-512 and bf16; 30 steps
    # at 1e-2 left them anywhere from 10 to 80
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rgb = torch.rand(4, 3, 1, 1, generator=g).expand(4, 3, 32, 32)
        lab = rgb_to_lab(rgb)
        lab[:, :1] = 60.0
        hints = simulate_hints(lab[:, 1:], [8] * 4, g)
        logits = model(normalize_l(lab[:, :1]), hints)
        loss = rebalanced_cross_entropy(logits, encode_targets(F.avg_pool2d(lab[:, 1:], 4), torch.ones(313)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    from colorizer import checkpoint

    config = checkpoint.read_config(run)
    checkpoint.save_model(run / checkpoint.MODEL_STEM, model.eval(), config)
    return Colorizer.load(run)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return hint_trained_model(tmp_path_factory.mktemp("hint_trained"))


# red, green and blue at the photo's lightness of 60, inside the sRGB gamut there (a hint the photo's
# lightness cannot show would be clipped): ab (50, 35), (-40, 35) and (5, -45), 90 ab units apart
HINT_COLOURS = ([235, 103, 86], [86, 161, 80], [91, 146, 224])


def test_a_briefly_trained_model_follows_a_hint_at_its_pixel(trained):
    """Each of three hints far apart comes out within 15 ab units of its colour at the pixel it was
    put on. A model that ignored its hints would give all three pixels one colour, which lies at least
    52 units from one of them; the untrained network misses by 30 to 44."""
    from colorizer.images import to_pil

    image = to_pil(lab_to_rgb(torch.tensor([60.0, 0.0, 0.0]).reshape(1, 3, 1, 1).expand(1, 3, 48, 64)))
    for rgb in HINT_COLOURS:
        result = trained.colorize(image, hints=[{"x": 32, "y": 24, "rgb": rgb}])
        got_ab = ab_of_rgb(torch.tensor([result.getpixel((32, 24))], dtype=torch.float32) / 255)[0]
        want_ab = ab_of_rgb(torch.tensor([rgb]) / 255.0)[0]
        assert (got_ab - want_ab).norm() < 15, (rgb, got_ab, want_ab)


def test_suggest_lists_distinct_likely_colours(trained):
    image = photo(64, 48)
    suggestions = trained.suggest(image, 10, 10, k=6)
    assert 1 <= len(suggestions) <= 6
    probabilities = [s["probability"] for s in suggestions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(len(s["rgb"]) == 3 and all(0 <= c <= 255 for c in s["rgb"]) for s in suggestions)
    assert len({tuple(s["rgb"]) for s in suggestions}) == len(suggestions)
    with pytest.raises(UserError, match="outside"):
        trained.suggest(image, 64, 10)


def test_colorize_command_takes_a_hints_file(tiny_hint_checkpoint, tmp_path, capsys):
    source = tmp_path / "photo.png"
    photo(40, 30).save(source)
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps([{"x": 10, "y": 10, "rgb": [250, 0, 0]}]))
    args = ["colorize", str(source), "--out", str(tmp_path / "out"), "--model", str(tiny_hint_checkpoint)]
    assert main([*args, "--hints", str(hints)]) == 0
    assert (tmp_path / "out" / "photo.png").is_file()
    hints.write_text(json.dumps([{"x": 10, "y": 99, "rgb": [250, 0, 0]}]))
    assert main([*args, "--hints", str(hints)]) == 1
    err = capsys.readouterr().err
    assert "error: hint 1: y = 99 lies outside the photo" in err and "Traceback" not in err
    hints.write_text("[]")  # no hints: the automatic colorization
    assert main([*args, "--hints", str(hints)]) == 0
    hints.write_text("{not json")
    assert main([*args, "--hints", str(hints)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_eval_scores_simulated_hints(tiny_hint_checkpoint, photo_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_hint_checkpoint), "--data", str(photo_dir), "--hints", "0,10",
                 "--json", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    assert set(results["hints"]) == {"0", "10"}
    assert set(results["hints"]["10"]) == {"psnr", "auc", "auc_rebal"}
    # no hints is the automatic colorization
    assert results["hints"]["0"]["auc"] == results["model"]["auc"]


def test_eval_hints_need_a_hint_model(tiny_checkpoint, photo_dir, capsys):
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_dir), "--hints", "10"]) == 1
    assert "takes no colour hints" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_dir), "--hints", "ten"]) == 1
    assert "--hints takes distinct whole numbers" in capsys.readouterr().err


def test_the_frozen_graph_of_a_hint_model_matches_eager_mode(tiny_hint_checkpoint):
    image = photo(80, 60)
    hints = [{"x": 10, "y": 10, "rgb": [255, 0, 0]}, {"x": 70, "y": 50, "rgb": [0, 0, 255], "radius": 8}]
    eager = Colorizer.load(tiny_hint_checkpoint, backend="torch", precision="fp32")
    frozen = Colorizer.load(tiny_hint_checkpoint, backend="torch", precision="fp32", optimize=True)
    for given in (None, hints):
        a = torch.tensor(list(eager.colorize(image, hints=given).getdata()), dtype=torch.float32)
        b = torch.tensor(list(frozen.colorize(image, hints=given).getdata()), dtype=torch.float32)
        assert (a - b).abs().max() <= 2


def test_the_frozen_graph_of_a_propagating_model_matches_eager_mode(tmp_path):
    from colorizer import checkpoint

    torch.manual_seed(0)
    options = {**TINY_HINT_OPTIONS, "hint_propagation": True}
    model = build_model("effnet-lite0", **options)
    torch.nn.init.constant_(model.propagation_gate.bias, 3.0)
    checkpoint.save_model(tmp_path / "model", model, {"preset": "effnet-lite0", "options": options, "input_size": 64,
                                                       "prior": [1 / 313] * 313})
    image = photo(80, 60)
    hints = [{"x": 10, "y": 10, "rgb": [255, 0, 0]}, {"x": 70, "y": 50, "rgb": [0, 0, 255]}]
    eager = Colorizer.load(tmp_path, backend="torch", precision="fp32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frozen = Colorizer.load(tmp_path, backend="torch", precision="fp32", optimize=True)
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []  # the demo starts without a word
    assert eager.takes_hints
    for given in (None, hints):
        a = torch.tensor(list(eager.colorize(image, hints=given).getdata()), dtype=torch.float32)
        b = torch.tensor(list(frozen.colorize(image, hints=given).getdata()), dtype=torch.float32)
        assert (a - b).abs().max() <= 2


def test_nearness_is_one_at_a_hint_fades_with_distance_and_drops_across_an_edge():
    lightness = torch.full((1, 1, 64, 64), 30.0)
    lightness[..., 40:] = 80.0  # an edge of 50 L units at column 40
    hints = torch.zeros(1, 3, 64, 64)
    hints[0, :, 30:34, 4:8] = torch.tensor([0.3, 0.2, 1.0])[:, None, None]
    nearness = hint_nearness(lightness, hints, (16, 16), reach=4.0, edge_cost=0.3)[0, 0]
    assert nearness.shape == (16, 16) and nearness[8, 1] == 1.0
    row = nearness[8]
    assert torch.all(row[1:9] > row[2:10])  # fading along the flat side
    # one cell before the edge and one after: the step costs as much as 15 cells of flat ground
    assert row[9] > 20 * row[10] > 0
    assert torch.equal(hint_nearness(lightness, torch.zeros(1, 3, 64, 64), (16, 16)), torch.zeros(1, 1, 16, 16))


def test_local_hint_logits_follow_the_hinted_prediction_only_near_a_hint():
    torch.manual_seed(0)
    hinted, automatic = torch.randn(2, 1, 313, 2, 2) * 3
    nearness = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    mixed = torch.softmax(local_hint_logits(hinted, automatic, nearness), dim=1)
    torch.testing.assert_close(mixed[..., 0, 0], torch.softmax(hinted, 1)[..., 0, 0])
    torch.testing.assert_close(mixed[..., :, 1], torch.softmax(automatic, 1)[..., :, 1])


def test_a_hint_of_an_unexpected_colour_stays_near_where_it_was_placed(tmp_path):
    """The same network with its hint propagation wide open: alone it carries one hint over the whole
    flat photo; with the locality mix far cells keep the automatic colour and the hint's own turn."""
    torch.manual_seed(0)
    options = {**TINY_HINT_OPTIONS, "hint_propagation": True, "propagation_reach": 64}
    model = build_model("effnet-lite0", **options)
    torch.nn.init.constant_(model.propagation_gate.bias, 20.0)
    from colorizer import checkpoint

    checkpoint.save_model(tmp_path / checkpoint.MODEL_STEM, model.eval(), {
        "preset": "effnet-lite0", "options": options, "input_size": 128,
        "prior": [1 / 313] * 313})
    from PIL import Image

    image = Image.new("RGB", (128, 128), (120, 120, 120))
    hint = [{"x": 8, "y": 8, "rgb": [230, 30, 200]}]
    moved = {}
    for reach in (None, 4.0):
        colorizer = Colorizer.load(tmp_path, hint_reach=reach, precision="fp32")
        lab = [rgb_to_lab(to_rgb_tensor(result))[0, 1:] for result in (colorizer.colorize(image, hints=hint),
                                                                         colorizer.colorize(image))]
        moved[reach] = (lab[0] - lab[1]).norm(dim=0)
    assert moved[None][96:, 96:].min() > 10  # the far corner turns without locality
    assert moved[4.0][96:, 96:].max() < 1 and moved[4.0][6:11, 6:11].min() > 10
