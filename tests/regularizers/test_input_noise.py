"""Gaussian input noise (regbench/regularizers/input_noise.py): a training batch gets sigma times
standard normal draws from the member's own device stream, the labels untouched. With mixup,
CutMix and cutout (training only, a switched-off knob, its range): tests/test_batch_regularizers.py; the
generic checks (stacks, resume, evaluation untouched): tests/test_contract.py."""

from __future__ import annotations

import torch

from regbench.models import build_model
from tests.helpers.configs import make_cfg
from tests.helpers.engine import stack_of


def _noise_stack(sigma: float):
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8]", f"reg.input_noise={sigma}")
    torch.manual_seed(0)
    return stack_of(cfg, build_model(cfg.model, cfg.reg, (5,), 3, "classification"))


def test_input_noise_adds_sigma_times_normal_draws_of_the_members_stream_and_leaves_the_labels():
    """The oracle: torch.randn on the member's stream `input_noise`, opened afresh by another
    stack of the same seed; a second batch draws on from where the first stopped."""
    sigma, n = 0.3, 4000
    stack, fresh = _noise_stack(sigma), _noise_stack(sigma)
    (noise,) = stack.batch_hooks
    draws = torch.Generator().set_state(fresh.members[0].device_rng("input_noise", torch.device("cpu")).get_state())
    x, y = torch.randn(1, n, 5, generator=torch.Generator().manual_seed(1)), torch.randint(0, 3, (1, n))
    for _ in range(2):
        out_x, out_y = noise.batch(stack, x.clone(), y)
        assert out_x.shape == x.shape and out_y is y
        expected = x[0] + sigma * torch.randn(x[0].shape, generator=draws)
        torch.testing.assert_close(out_x[0], expected, rtol=0, atol=1e-6)
    added = out_x[0] - x[0]
    assert abs(added.mean().item()) < 0.02 and abs(added.std().item() - sigma) < 0.01  # N(0, sigma^2)


def test_input_noise_at_zero_is_no_hook():
    stack = _noise_stack(0.0)
    assert stack.batch_hooks == []  # off: nothing runs on the training batches
