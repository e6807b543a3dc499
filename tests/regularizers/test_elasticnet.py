"""The elastic net, L1 and L2 (regbench/regularizers/elasticnet.py): the penalty and its
soft-threshold (proximal) step against hand-computed values, the engine's step with it against
torch.optim, and the trained solutions against scikit-learn's ElasticNet and L1 logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import ElasticNet
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.models import build_model
from regbench.regularizers import penalised_weights
from regbench.regularizers.elasticnet import elastic_net, soft_threshold_
from tests.helpers.configs import make_cfg
from tests.helpers.data import table_data as _table_data
from tests.helpers.engine import linear_stack as _linear_stack
from tests.helpers.engine import stack_of, train_epochs
from tests.helpers.engine import step as _step


def _soft(w: torch.Tensor, t) -> torch.Tensor:
    """The reference: sign(w) * max(|w| - t, 0)."""
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0.0)


# Two small explicit tensors: ||.||_1 = 1 + 2 + 3 + 0.5 + 0.5 = 7, ||.||_2^2 = 1 + 4 + 9 + 0.25 + 0.25 = 14.5
W1 = [[1.0, -2.0], [0.0, 3.0]]
W2 = [[0.5], [-0.5]]


@pytest.mark.parametrize(
    "alpha, l1_ratio, expected",
    [
        (0.1, 1.0, 0.1 * 7.0),  # lasso: alpha * ||w||_1
        (0.1, 0.0, 0.5 * 0.1 * 14.5),  # ridge: 0.5 * alpha * ||w||^2
        (0.1, 0.5, 0.1 * 0.5 * 7.0 + 0.5 * 0.1 * 0.5 * 14.5),
        (2.0, 0.25, 2.0 * 0.25 * 7.0 + 0.5 * 2.0 * 0.75 * 14.5),
    ],
)
def test_elastic_net_hand_computed(alpha, l1_ratio, expected):
    ws = [torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)]
    got = elastic_net(ws, alpha, l1_ratio)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("l1_ratio", [0.0, 0.5, 1.0])
def test_elastic_net_without_l1_is_only_the_l2_part(l1_ratio):
    ws = [torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)]
    alpha = 0.3
    got = elastic_net(ws, alpha, l1_ratio, include_l1=False)
    assert got.item() == pytest.approx(0.5 * alpha * (1 - l1_ratio) * 14.5, rel=1e-12, abs=1e-15)


def test_elastic_net_gradient_matches_convention():
    w = torch.tensor(W1, dtype=torch.float64, requires_grad=True)
    alpha, r = 0.4, 0.5
    elastic_net([w], alpha, r).backward()
    with torch.no_grad():
        expected = alpha * r * torch.sign(w) + alpha * (1 - r) * w
    torch.testing.assert_close(w.grad, expected)


def test_soft_threshold_float_matches_formula_and_gives_exact_zeros():
    torch.manual_seed(0)
    a, b = torch.randn(6, 7), torch.randn(3, 2, 3, 3)
    a[0, 0], a[0, 1] = 0.3, -0.3  # exactly at the threshold -> 0
    ref = [_soft(a, 0.3), _soft(b, 0.3)]
    ws = [a.clone(), b.clone()]
    soft_threshold_(ws, 0.3)
    for w, r in zip(ws, ref):
        torch.testing.assert_close(w, r, rtol=0, atol=0)
    assert ws[0][0, 0].item() == 0.0 and ws[0][0, 1].item() == 0.0
    n_small = int((a.abs() <= 0.3).sum() + (b.abs() <= 0.3).sum())
    assert n_small > 0
    assert sum(int((w == 0).sum()) for w in ws) == n_small
    # entries above the threshold moved towards 0 by exactly t
    big = a.abs() > 0.3
    torch.testing.assert_close(ws[0][big].abs(), a[big].abs() - 0.3)


def test_soft_threshold_in_place_on_parameters():
    lin = nn.Linear(4, 3)
    before = lin.weight.detach().clone()
    soft_threshold_([lin.weight], 0.2)
    assert isinstance(lin.weight, nn.Parameter)
    torch.testing.assert_close(lin.weight.detach(), _soft(before, 0.2), rtol=0, atol=0)


def test_soft_threshold_per_tensor_thresholds():
    torch.manual_seed(1)
    a, b = torch.randn(5, 4), torch.randn(4, 3)
    ta = torch.rand(5, 4)  # per-coordinate
    tb = torch.full((4, 3), 0.5)
    ws = [a.clone(), b.clone()]
    soft_threshold_(ws, [ta, tb])
    torch.testing.assert_close(ws[0], _soft(a, ta), rtol=0, atol=0)
    torch.testing.assert_close(ws[1], _soft(b, tb), rtol=0, atol=0)
    expected_zeros = int((a.abs() <= ta).sum() + (b.abs() <= tb).sum())
    assert expected_zeros > 0
    assert int((ws[0] == 0).sum() + (ws[1] == 0).sum()) == expected_zeros
    # a constant per-tensor threshold agrees with the float path
    c = b.clone()
    soft_threshold_([c], 0.5)
    torch.testing.assert_close(c, ws[1])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_step_then_prox_threshold_is_lr_times_strength_over_one_minus_momentum(momentum):
    """The engine's SGD step equals torch.optim.SGD's bit for bit; the L1 proximal step after it
    thresholds at lr * strength / (1 - momentum)."""
    strength = 2.5 * (1 - momentum)  # threshold 0.1 * strength / (1 - momentum) = 0.25
    cfg, model, stack = _linear_stack("optim=sgd", "optim.lr=0.1", f"optim.momentum={momentum}", "reg=l1",
                                      f"reg.alpha={strength}")
    w, b = (nn.Parameter(t.detach().clone()) for t in (model[-1].weight, model[-1].bias))
    opt = torch.optim.SGD([w, b], lr=0.1, momentum=momentum)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # the second step uses the momentum buffer
        grads = [torch.randn(6, 5, generator=g), torch.randn(6, generator=g)]
        w.grad, b.grad = grads[0].clone(), grads[1].clone()
        opt.step()
        with torch.no_grad():
            w.copy_(_soft(w, 0.25))
        ours = _step(stack, grads)
        assert torch.equal(ours[0], w.detach()) and torch.equal(ours[1], b.detach())
    assert 0 < int((ours[0] == 0).sum()) < ours[0].numel()
    assert (ours[1] != 0).all()  # biases are not thresholded


@pytest.mark.parametrize("optim", ["adam", "adamw"])
def test_adam_step_then_prox_threshold_is_per_coordinate(optim):
    """The engine's Adam/AdamW step equals torch.optim's (the oracle) to float32 rounding, and
    the proximal step thresholds every coordinate at lr * strength / (sqrt(v_hat) + eps)."""
    lr, strength = 0.05, 2.0
    cfg, model, stack = _linear_stack(f"optim={optim}", f"optim.lr={lr}", "reg=l1", f"reg.alpha={strength}",
                                      "reg.weight_decay=0.1" if optim == "adamw" else "reg.weight_decay=0")
    w, b = (nn.Parameter(t.detach().clone()) for t in (model[-1].weight, model[-1].bias))
    cls = torch.optim.AdamW if optim == "adamw" else torch.optim.Adam
    extra = {"weight_decay": 0.1} if optim == "adamw" else {}
    opt = cls([{"params": [w], **extra}, {"params": [b], "weight_decay": 0.0}], lr=lr)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):  # step = 3: the bias correction depends on it
        grads = [torch.randn(6, 5, generator=g) * torch.logspace(-2, 1, 5), torch.randn(6, generator=g)]
        w.grad, b.grad = grads[0].clone(), grads[1].clone()
        opt.step()
        after_step = w.detach().clone()
        state = opt.state[w]
        v_hat = state["exp_avg_sq"] / (1.0 - 0.999 ** float(state["step"]))
        t = lr * strength / (v_hat.sqrt() + 1e-8)
        with torch.no_grad():
            w.copy_(_soft(w, t))
        ours = _step(stack, grads)
        torch.testing.assert_close(ours[0], w.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours[1], b.detach(), rtol=1e-6, atol=1e-7)
    assert t.max() / t.min() > 10  # the threshold really is per coordinate
    assert 0 < int((ours[0] == 0).sum()) < ours[0].numel()
    # and it is not SGD's single lr * strength: the comparison above can tell the two apart
    assert not torch.equal(w.detach(), _soft(after_step, lr * strength))


ALPHAS = [(0.1, 1.0), (0.1, 0.5), (0.2, 0.0)]


@pytest.fixture(scope="module")
def regression_problem():
    X, y = make_regression(n_samples=200, n_features=20, n_informative=5, noise=5.0, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std() + 0.7  # a non-zero intercept to learn
    return X, y


def _sklearn_fit(X, y, alpha, l1_ratio):
    # our alpha halves: mean squared error = 2 * (1/2n) ||.||^2
    return ElasticNet(alpha=alpha / 2, l1_ratio=l1_ratio, fit_intercept=True, tol=1e-12, max_iter=100_000).fit(X, y)


def _check_against_sklearn(w: np.ndarray, b: float, sk, l1_ratio: float) -> None:
    np.testing.assert_allclose(w, sk.coef_, atol=1e-3)
    assert b == pytest.approx(sk.intercept_, abs=1e-3)
    np.testing.assert_array_equal(w == 0, sk.coef_ == 0)
    if l1_ratio > 0:
        assert (sk.coef_ == 0).sum() >= 10  # the comparison of the zero pattern means something
    else:
        assert (w != 0).all()


@pytest.mark.parametrize("alpha, l1_ratio", ALPHAS)
def test_proximal_gradient_matches_sklearn_elastic_net(regression_problem, alpha, l1_ratio):
    X, y = regression_problem
    Xt, yt = torch.tensor(X), torch.tensor(y)
    torch.manual_seed(0)
    lin = nn.Linear(X.shape[1], 1).double()
    opt = torch.optim.SGD(lin.parameters(), lr=0.3)
    for _ in range(400):
        loss = F.mse_loss(lin(Xt).squeeze(-1), yt) + elastic_net([lin.weight], alpha, l1_ratio, include_l1=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        soft_threshold_([lin.weight], 0.3 * alpha * l1_ratio)
    w = lin.weight.detach().numpy().ravel()
    _check_against_sklearn(w, lin.bias.item(), _sklearn_fit(X, y, alpha, l1_ratio), l1_ratio)
    # sklearn with the same alpha (no halving) is a different solution: the factor 2 is real
    assert np.abs(w - _sklearn_fit(X, y, 2 * alpha, l1_ratio).coef_).max() > 1e-2


def _train_full_batch(cfg, X, y, task: str, epochs: int):
    """A float64 model trained by the engine's `train_epoch`, one full batch per epoch (the
    batch size of `cfg` must be len(y)); returns it and its penalised weights."""
    xt, yt = torch.tensor(X), torch.tensor(y)
    n_outputs = 1 if task == "regression" else int(yt.max()) + 1
    data = Data(task, xt, yt, xt[:10], yt[:10], xt[:10], yt[:10], n_outputs=n_outputs, is_image=False)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, n_outputs, task).double()
    train_epochs(stack_of(cfg, model), data, epochs)
    return model, penalised_weights(model)


@pytest.mark.parametrize("momentum, lr", [(0.0, 0.3), (0.9, 0.03)])
@pytest.mark.parametrize("alpha, l1_ratio", ALPHAS)
def test_train_epoch_objective_matches_sklearn_elastic_net(regression_problem, alpha, l1_ratio, momentum, lr):
    """The real training loop (full batch, SGD with and without heavy-ball momentum, proximal L1)
    converges to sklearn's solution with alpha/2: the project's penalty convention, end to end."""
    X, y = regression_problem
    cfg = make_cfg("dataset=synthetic_regression", "model=linear", "optim=sgd", f"optim.momentum={momentum}",
                   f"optim.lr={lr}", f"reg.alpha={alpha}", f"reg.l1_ratio={l1_ratio}", f"trainer.batch_size={len(y)}")
    model, _ = _train_full_batch(cfg, X, y, "regression", epochs=400)
    lin = model.net[-1]
    w = lin.weight.detach().numpy().ravel()
    _check_against_sklearn(w, lin.bias.item(), _sklearn_fit(X, y, alpha, l1_ratio), l1_ratio)


@pytest.fixture(scope="module")
def classification_problem():
    X, y = make_classification(n_samples=300, n_features=30, n_informative=5, n_redundant=0, n_classes=3,
                               random_state=0)
    return (X - X.mean(0)) / X.std(0), y


def _sklearn_l1_logistic(X, y, strength):
    """scikit-learn's multinomial logistic regression with an L1 penalty. Its objective,
    ||W||_1 + C * sum of cross-entropies, divided by C * n is regbench's mean cross-entropy
    + strength * ||W||_1 with C = 1 / (strength * n); neither penalises the intercept."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    l1 = {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}  # `penalty` is deprecated in 1.8
    return LogisticRegression(C=1 / (strength * len(y)), solver="saga", tol=1e-12, max_iter=100_000, **l1).fit(X, y)


@pytest.mark.parametrize(
    "optim",
    [
        ["optim=sgd", "optim.momentum=0", "optim.lr=0.5"],
        ["optim=sgd", "optim.momentum=0.9", "optim.lr=0.05"],  # 1 / (1 - momentum) = 10: the old threshold's error
        ["optim=adam", "optim.lr=0.01"],
    ],
    ids=["sgd", "sgd-momentum", "adam"],
)
def test_proximal_training_meets_the_optimality_conditions_of_the_configured_objective(classification_problem, optim):
    """Full-batch training with the real loop ends where the subgradient of the configured
    objective, mean cross-entropy + alpha * ||W||_1, contains zero: grad = -alpha * sign(w) on
    every non-zero weight, |grad| <= alpha on every zero one, and zero gradient on the bias.
    The zero pattern is scikit-learn's."""
    X, y = classification_problem
    alpha = 0.05
    cfg = make_cfg("model=linear", *optim, f"reg.alpha={alpha}", "reg.l1_ratio=1", f"trainer.batch_size={len(y)}")
    model, (w,) = _train_full_batch(cfg, X, y, "classification", epochs=1000 if cfg.optim.name == "sgd" else 2000)
    xt, yt = torch.tensor(X), torch.tensor(y)
    model.zero_grad()
    F.cross_entropy(model(xt), yt).backward()
    grad, zero = w.grad, w.detach() == 0
    assert 0 < int(zero.sum()) < w.numel()
    assert (grad + alpha * torch.sign(w.detach()))[~zero].abs().max() < 1e-6  # stationary where w != 0
    assert grad[zero].abs().max() <= alpha + 1e-6  # zero is optimal where w == 0
    assert model[-1].bias.grad.abs().max() < 1e-6
    sk = _sklearn_l1_logistic(X, y, alpha)
    np.testing.assert_array_equal(zero.numpy(), sk.coef_ == 0)


def test_train_epoch_applies_l1_proximal_step_exact_zeros():
    data = _table_data(n=64)
    cfg = make_cfg("model=linear", "optim=sgd", "optim.momentum=0", "optim.lr=0.1", "reg=l1", "reg.alpha=0.5",
                   "trainer.batch_size=16")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    train_epochs(stack_of(cfg, model), data)
    assert (model[-1].weight == 0).sum() > 0
    assert (model[-1].bias != 0).all()  # biases are not thresholded
