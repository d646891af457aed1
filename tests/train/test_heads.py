"""Margin heads and center loss: the formulas, and fp32 safety under autocast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceverify.train.heads import CenterLoss, ClassifierHead, arcface_margin, cosface_margin, margin_at


def test_margins_follow_their_definitions() -> None:
    theta = torch.tensor([0.3, 1.0, 2.0])
    got = arcface_margin(torch.cos(theta), 0.5)
    torch.testing.assert_close(got, torch.cos(theta + 0.5))
    torch.testing.assert_close(cosface_margin(torch.cos(theta), 0.35), torch.cos(theta) - 0.35)
    # past theta + m > pi the ArcFace target keeps falling instead of rising again
    near_pi = torch.cos(torch.tensor([2.9, 3.0, 3.1]))
    assert (arcface_margin(near_pi, 0.5).diff() < 0).all()


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_margin_heads_compute_clamped_fp32_cosines_under_bf16(kind: str) -> None:
    torch.manual_seed(0)
    head = ClassifierHead(kind, 8, 5, scale=30.0)
    embeddings = torch.randn(4, 8)
    embeddings[0] = head.weight[2].detach() * 3  # exactly on a class direction: cos = 1
    labels = torch.tensor([2, 0, 1, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, plain = head(embeddings.bfloat16(), labels)
    assert logits.dtype == plain.dtype == torch.float32
    assert torch.isfinite(logits).all()
    cosine = F.linear(F.normalize(embeddings), F.normalize(head.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
    torch.testing.assert_close(plain, cosine * 30, atol=0.5, rtol=0.02)  # bf16 inputs, fp32 maths
    margin = head.margin
    expected = (arcface_margin if kind == "arcface" else cosface_margin)(plain[1, 0] / 30, margin) * 30
    torch.testing.assert_close(logits[1, 0], expected)
    off_target = torch.ones_like(logits, dtype=torch.bool)
    off_target[torch.arange(4), labels] = False
    torch.testing.assert_close(logits[off_target], plain[off_target])


def test_softmax_head_and_center_loss() -> None:
    head = ClassifierHead("softmax", 8, 3)
    logits, plain = head(torch.randn(2, 8), torch.tensor([0, 1]))
    assert logits is plain and logits.shape == (2, 3)
    center = CenterLoss(3, 4)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0.0] * 4, [1.0] * 4, [2.0] * 4]))
    embeddings = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]])
    value = center(embeddings.bfloat16(), torch.tensor([0, 2]))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    assert math.isclose(ClassifierHead("arcface", 4, 2).margin, 0.5)


def test_center_loss_gradient_pulls_each_embedding_toward_its_own_centre() -> None:
    """The mechanism itself, exactly: d/de of ½·mean‖e − c_y‖² is (e − c_y)/N, so a descent
    step moves every embedding straight toward its own class centre and no other."""
    torch.manual_seed(0)
    center = CenterLoss(3, 5)
    with torch.no_grad():
        center.centers.copy_(torch.randn(3, 5) * 2)
    embeddings = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    center(embeddings, labels).backward()
    assert embeddings.grad is not None
    own = center.centers.detach()[labels]
    torch.testing.assert_close(embeddings.grad, (embeddings.detach() - own) / 6)
    stepped = embeddings.detach() - 0.5 * embeddings.grad
    before = (embeddings.detach() - own).norm(dim=1)
    after = (stepped - own).norm(dim=1)
    torch.testing.assert_close(after, before * (1 - 0.5 / 6))  # straight line, fixed fraction
    # and the centres' own gradient points from the centre to the mean of its members
    assert center.centers.grad is not None
    members = embeddings.detach().view(2, 3, 5).sum(dim=0)  # class j at rows j and j + 3
    torch.testing.assert_close(center.centers.grad, -(members - 2 * center.centers.detach()) / 6)


def test_margin_warm_up_ramps_linearly_to_the_target_then_holds() -> None:
    assert margin_at(0.5, 0.0, 2.0) == 0.0
    assert margin_at(0.5, 0.5, 2.0) == pytest.approx(0.125)
    assert margin_at(0.5, 1.999, 2.0) < 0.5
    assert margin_at(0.5, 2.0, 2.0) == margin_at(0.5, 7.0, 2.0) == 0.5
    assert margin_at(0.35, 0.0, 0.0) == 0.35  # no warm-up: the full margin at once
    head = ClassifierHead("cosface", 4, 3)
    head.margin = margin_at(head.target_margin, 1.0, 2.0)
    logits, plain = head(torch.eye(3, 4), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(plain.diagonal() - logits.diagonal(), torch.full((3,), 0.175 * head.scale))
