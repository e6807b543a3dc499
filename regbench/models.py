"""Builds the model named by the `model` node, with the layers regularizers insert (dropout,
batch norm: each regularizer's `layers` hook, regbench.regularizers).

Layers are created in the same order whatever the regularizers (batch norm and dropout
draw no random numbers at construction), so for one seed every regularizer starts from the
same weights; Shake-Shake's second branches are created after every other layer, which thus
keeps those weights too.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from regbench import UserInputError
from regbench.regularizers.contract import defines

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class Regressor(nn.Module):
    """Wraps a network with one output so that it returns shape (N,), like the targets."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def mix_outputs(outs: Sequence[torch.Tensor], mix: torch.Tensor, regression: bool) -> torch.Tensor:
    """The outputs of an ensemble from its members' outputs: each member's output (..., B, C) or,
    for a regression, (..., B), `outs` in the ensemble's order, `mix` its weights (..., S) (summing
    to 1; a weight of 0 adds an exact 0). Classification: the log of the weighted average of the
    members' softmax probabilities, which cross-entropy and argmax read as logits (their log-sum-exp
    is log 1 = 0 up to rounding); regression: the weighted average of the outputs. One function for
    the engine's stacked evaluation and `Ensemble`, so that both round alike."""
    total = None
    for s, out in enumerate(outs):
        w = mix[..., s]
        term = w.view(*w.shape, 1) * out if regression else w.view(*w.shape, 1, 1) * torch.softmax(out, dim=-1)
        total = term if total is None else total + term
    return total if regression else total.log()


class Ensemble(nn.Module):
    """Several copies of one network whose predictions are averaged (`mix_outputs`): a snapshot
    ensemble's reported model (regbench.regularizers.snapshot). Its state dict holds each copy's
    tensors under `members.<i>.` and the weights under `mix`, so that model.pt rebuilds it
    (`Ensemble.like`).

    Args:
        members: the copies, in the ensemble's order.
        mix: their weights in the average, (S,), summing to 1.
        regression: average the outputs (a Regressor's) instead of the class probabilities.
    """

    def __init__(self, members: Sequence[nn.Module], mix: torch.Tensor, regression: bool) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("mix", mix.detach().clone())
        self.regression = regression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mix_outputs([m(x) for m in self.members], self.mix, self.regression)

    @staticmethod
    def like(network: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
        """The module a saved state dict is of: `network` itself (a plain model's state), or an
        ensemble of copies of it (an `Ensemble`'s: keys `members.<i>.*` and `mix`), with that state
        loaded."""
        import copy

        if "mix" not in state:
            network.load_state_dict(state)
            return network
        size = state["mix"].shape[0]
        model = Ensemble([copy.deepcopy(network) for _ in range(size)], state["mix"],
                         isinstance(network, Regressor))
        model.load_state_dict(state)
        return model


def build_model(model: Any, reg: Any, input_shape: tuple[int, ...], n_outputs: int, task: str,
                regularizers: Sequence[type] | None = None, search: tuple[str, ...] = ()) -> nn.Module:
    """Returns the network for `model.name`: linear, mlp, cnn, resmlp, resnet, or custom (yours).

    Args:
        model: the `model` config node.
        reg: the `reg` config node, read by the regularizers' `layers` hooks.
        input_shape: shape of one stored sample, (features,) or (C, H, W).
        n_outputs: number of classes, or 1 for regression.
        task: "classification" or "regression".
        regularizers: the regularizer classes whose `layers` hooks insert layers; the
            built-in ones when None.
        search: folders where model=custom's module may lie (`--config-dir`), besides the
            Python path and the current folder.

    Raises:
        UserInputError: a cnn or resnet asked of tabular data, or an image too small for a cnn's blocks.
    """
    if model.name == "custom":
        net = _custom(model, reg, input_shape, n_outputs, search)
        out = Regressor(net) if task == "regression" else net
        out.regbench_custom = True  # the engine runs it as written (regbench.engine.stack)
        out.regbench_outputs = n_outputs
        return out
    if regularizers is None:
        from regbench.regularizers import builtin

        regularizers = builtin()
    inserted = _Inserted(reg, [cls for cls in regularizers if defines(cls, "layers")])
    builders = {"linear": _linear, "mlp": _mlp, "cnn": _cnn, "resmlp": _resmlp, "resnet": _resnet}
    net = builders[model.name](model, inserted, input_shape, n_outputs)
    return Regressor(net) if task == "regression" else net


def custom_factory(model: Any, search: tuple[str, ...] = ()) -> Any:
    """model=custom's factory, from `model._target_` (regbench.usercode.load_object)."""
    from regbench.usercode import load_object

    factory = load_object("model._target_", model._target_, search)
    if not callable(factory):
        raise UserInputError(f"model._target_={model._target_} is not callable: name a function or class that "
                             "returns a torch.nn.Module")
    return factory


def _takes_reg(factory: Any) -> bool:
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "reg" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def custom_reg_problem(factory: Any, cfg: Any) -> str | None:
    """Why a regularizer that acts by inserting layers (dropout, batch norm...) cannot reach
    your model, or None: with model=custom it acts only through the factory's `reg` argument."""
    from regbench.regularizers import builtin

    if _takes_reg(factory):
        return None
    acting = [f"reg.{k.name}={cfg.reg[k.name]}" for cls in builtin() if defines(cls, "layers")
              for k in cls.knobs if cls.label({kk.name: cfg.reg[kk.name] for kk in cls.knobs}, cfg.model) and
              cfg.reg[k.name] != k.default]
    if not acting:
        return None
    return (f"{', '.join(acting)} cannot act on model=custom: {cfg.model._target_} takes no `reg` argument "
            "(a factory with one receives the reg node, e.g. reg['dropout'], and builds the layers itself)")


def _custom(model: Any, reg: Any, input_shape: tuple[int, ...], n_outputs: int, search: tuple[str, ...]) -> nn.Module:
    from omegaconf import OmegaConf

    factory = custom_factory(model, search)
    kwargs = OmegaConf.to_container(model.kwargs, resolve=True) if not isinstance(model.kwargs, dict) else dict(model.kwargs)
    if _takes_reg(factory):
        kwargs["reg"] = OmegaConf.to_container(reg, resolve=True) if not isinstance(reg, dict) else dict(reg)
    try:
        net = factory(tuple(input_shape), n_outputs, **kwargs)
    except Exception as e:  # the user's code: its error, in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserInputError(f"model._target_={model._target_} failed for input shape {tuple(input_shape)} and "
                             f"{n_outputs} outputs: {type(e).__name__}: {first}".rstrip(": ")) from e
    if not isinstance(net, nn.Module):
        raise UserInputError(f"model._target_={model._target_} returned a {type(net).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in net.parameters()):
        raise UserInputError(f"model._target_={model._target_} returned a module without trainable parameters")
    return net


def probe_custom(model: nn.Module, x: torch.Tensor, target: str) -> None:
    """Runs model=custom's network once on `x` (two training examples, as the model receives
    them) before training, so that a network that fails on regbench's inputs, or maps them to
    another shape than (B, n_outputs), is refused in one line instead of failing mid-training.

    Nothing a run computes changes: the pass runs in eval mode, without gradients, on forked
    random streams (a layer that draws numbers in eval mode draws from a copy), and every
    buffer (batch norm's running statistics...) and every module's training flag are put back.

    Args:
        model: build_model's network for model=custom (a Regressor around it for a regression).
        x: a batch of inputs, (B, *input_shape).
        target: `model._target_`, the factory named in the message.

    Raises:
        UserInputError: the forward pass raises (its first line), or its output is not a
            tensor of shape (B, n_outputs).
    """
    net = model.net if isinstance(model, Regressor) else model
    n_outputs, batch = model.regbench_outputs, x.shape[0]
    modes = [(m, m.training) for m in net.modules()]
    buffers = [(b, b.detach().clone()) for b in net.buffers()]
    needs = f"(B, {n_outputs})"
    inputs = _shape(x.shape, batch)
    cuda = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            net.eval()
            out = net(x)
    except Exception as e:  # the user's code: its error, in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserInputError(f"model=custom: {target} fails on inputs {inputs}: {type(e).__name__}: {first}".rstrip(": ")
                             + f"; regbench needs it to map them to {needs}") from e
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
    if not isinstance(out, torch.Tensor):
        raise UserInputError(f"model=custom: {target} maps {inputs} to a {type(out).__name__}, not a tensor; "
                             f"regbench needs {needs}")
    if tuple(out.shape) != (batch, n_outputs):
        raise UserInputError(f"model=custom: {target} maps {inputs} to {_shape(out.shape, batch)}; regbench needs {needs}")


def _shape(shape: Sequence[int], batch: int) -> str:
    """(B, 1, 8, 8) for a batch shape whose first dimension is `batch`, else the shape as it is."""
    dims = [str(d) for d in shape]
    if dims and dims[0] == str(batch):
        dims[0] = "B"
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


class Residual(nn.Module):
    """A residual block: body(h) + shortcut(h), the shortcut the identity when it is empty; with
    a second branch (`add_twin`, Shake-Shake's), mix(body(h), twin(h)) + shortcut(h).

    All are Sequentials, which the engine (regbench.engine.stack) compiles like the whole
    network, and sums in this order, so that a stack of one computes exactly this.
    """

    def __init__(self, body: list[nn.Module], shortcut: list[nn.Module] | None = None) -> None:
        super().__init__()
        # registered body first: the engine's tensor order is that of `modules()`
        self.body = nn.Sequential(*body)
        self.shortcut = nn.Sequential(*(shortcut or []))
        self.twin: nn.Sequential | None = None
        self.mix: nn.Module | None = None

    def add_twin(self, twin: list[nn.Module], mix: nn.Module) -> None:
        """Gives the block a second branch `twin` (registered after the shortcut: the tensors'
        order), combined with the body by `mix(body(h), twin(h))`."""
        self.twin, self.mix = nn.Sequential(*twin), mix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.twin is None:
            return self.body(x) + self.shortcut(x)
        return self.mix(self.body(x), self.twin(x)) + self.shortcut(x)


class _Inserted:
    """The layers the regularizers insert at a place of the network, each tagged with the name
    of the regularizer that owns it (the engine runs such a layer through its owner's
    `forward` hook, unless it is a layer the engine holds tensors of, like batch norm)."""

    def __init__(self, reg: Any, classes: list[type]) -> None:
        self.reg, self.classes = reg, classes

    def __call__(self, where: str, width: int, dims: int) -> list[nn.Module]:
        out = []
        for cls in self.classes:
            for layer in cls.layers(self.reg, where, width, dims):
                if not isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    layer.regbench_regularizer = cls.name
                out.append(layer)
        return out


    def twins(self, blocks: list[tuple[Residual, Any, int]], dims: int) -> None:
        """Gives each (block, its body's builder, its width) a second branch, built anew (its own
        weights), where a regularizer inserts a "mix" layer (Shake-Shake). Called once every
        other layer exists, so that the model's other weights are those it has without it."""
        for residual, body, width in blocks:
            mix = self("mix", width, dims)
            if len(mix) > 1:
                raise ValueError(f"two regularizers mix a residual block's branches: {mix}")
            if mix:
                residual.add_twin(body(), mix[0])

    def branch(self, width: int, dims: int, block: int, blocks: int) -> list[nn.Module]:
        """The layers at the end of residual branch `block` (1-based) of `blocks`, each given its
        depth l / L (the rate of stochastic depth and ShakeDrop grows linearly with it)."""
        out = self("branch", width, dims)
        for layer in out:
            layer.regbench_depth = block / blocks
        return out


def _hidden_block(n_in: int, n_out: int, model: Any, inserted: _Inserted) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), *inserted("norm", n_out, 1), ACTIVATIONS[model.activation](),
            *inserted("hidden", n_out, 1)]


def _flat_size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for s in input_shape:
        size *= s
    return size


def _linear(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    # input layers (dropout): the only place a linear model has
    layers: list[nn.Module] = [nn.Flatten(), *inserted("input", _flat_size(input_shape), 1)]
    layers.append(nn.Linear(_flat_size(input_shape), n_outputs))
    return nn.Sequential(*layers)


def _mlp(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = _flat_size(input_shape)
    for width in model.hidden_sizes:
        layers += _hidden_block(n_in, width, model, inserted)
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)


def _cnn(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    if len(input_shape) != 3:
        raise UserInputError(
            "model=cnn needs image data (digits, mnist, fashion_mnist, cifar10); "
            f"this dataset has {input_shape[0]} tabular features"
        )
    c_in, h, w = input_shape
    n_blocks = len(model.channels)
    if h >> n_blocks < 1 or w >> n_blocks < 1:
        raise UserInputError(
            f"model.channels has {n_blocks} blocks, each halving the image, too many for {h}x{w} inputs"
        )
    layers: list[nn.Module] = []
    for c_out in model.channels:
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        layers += [*inserted("norm", c_out, 2), ACTIVATIONS[model.activation](), nn.MaxPool2d(2)]
        c_in = c_out
    layers.append(nn.Flatten())
    n_in = c_in * (h >> n_blocks) * (w >> n_blocks)
    # Dropout sits in the fully connected head, where conv nets conventionally put it.
    for width in model.hidden_sizes:
        layers += _hidden_block(n_in, width, model, inserted)
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)


def _resmlp(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The residual MLP of Regularization Cocktails (Kadra et al. 2021; Auto-PyTorch's shaped
    ResNet at a constant width): an input linear layer to `model.width`, `model.groups` x
    `model.blocks` pre-activation residual blocks, each

        h + ([BN] -> act -> linear -> [BN] -> act -> [dropout] -> linear -> [drop_path, shakedrop])(h),

    then [BN] -> act -> the head. Batch norm with reg.batchnorm, dropout with reg.dropout; the
    groups only count blocks here (every group has the same width). With reg.shake_shake each
    block has a second branch like the first (built last, its own weights), the two mixed."""
    width, act = model.width, ACTIVATIONS[model.activation]
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(_flat_size(input_shape), width)]
    n_blocks = model.groups * model.blocks
    blocks = []
    for block in range(1, n_blocks + 1):
        def body(block: int = block) -> list[nn.Module]:
            return [*inserted("norm", width, 1), act(), nn.Linear(width, width), *inserted("norm", width, 1), act(),
                    *inserted("hidden", width, 1), nn.Linear(width, width), *inserted.branch(width, 1, block, n_blocks)]
        blocks.append((Residual(body()), body, width))
        layers.append(blocks[-1][0])
    layers += [*inserted("norm", width, 1), act(), nn.Linear(width, n_outputs)]
    inserted.twins(blocks, 1)
    return nn.Sequential(*layers)


def _resnet(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The CIFAR ResNet of He et al. 2016 (section 4.2): a 3x3 conv to 16 channels, three stages
    of n = (depth - 2) / 6 basic blocks at 16, 32, 64 channels (times `model.width_mult`), the
    first block of stages 2 and 3 with stride 2, global average pooling, a linear head. A basic
    block is

        act(shortcut(h) + (conv3x3 -> [BN] -> act -> [dropout] -> conv3x3 -> [BN] -> [drop_path, shakedrop])(h)),

    its shortcut the identity, or where the shape changes a 1x1 conv with stride 2 and [BN]
    (option B, as torchvision's and timm's ResNets). Batch norm comes with reg.batchnorm, as in
    every regbench model, so that it can be compared here too: the literature's ResNet-20 is
    `model=resnet reg=batchnorm`. Dropout sits between a block's two convolutions, as in Wide
    ResNets (Zagoruyko & Komodakis 2016). Convolutions keep their biases (without batch norm
    nothing else shifts them). Fits 8x8 digits (stages at 8, 4, 2) as well as 28x28 and 32x32.
    With reg.shake_shake each block has a second branch like the first (built last, its own
    weights), the two mixed.
    """
    if len(input_shape) != 3:
        raise UserInputError(
            "model=resnet needs image data (digits, mnist, fashion_mnist, cifar10); "
            f"this dataset has {input_shape[0]} tabular features"
        )
    act = ACTIVATIONS[model.activation]
    per_stage, n_blocks = (model.depth - 2) // 6, 3 * ((model.depth - 2) // 6)
    c_in = 16 * model.width_mult
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], c_in, 3, padding=1), *inserted("norm", c_in, 2), act()]
    block, blocks = 0, []
    for stage, c_out in enumerate(w * model.width_mult for w in (16, 32, 64)):
        for i in range(per_stage):
            stride, block = (2 if stage > 0 and i == 0 else 1), block + 1

            def body(c_in: int = c_in, c_out: int = c_out, stride: int = stride, block: int = block) -> list[nn.Module]:
                return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), *inserted("norm", c_out, 2), act(),
                        *inserted("hidden", c_out, 2), nn.Conv2d(c_out, c_out, 3, padding=1),
                        *inserted("norm", c_out, 2), *inserted.branch(c_out, 2, block, n_blocks)]
            first = body()  # before the shortcut: the order the layers draw their initial weights in
            shortcut = [] if stride == 1 and c_in == c_out else [nn.Conv2d(c_in, c_out, 1, stride=stride),
                                                                 *inserted("norm", c_out, 2)]
            blocks.append((Residual(first, shortcut), body, c_out))
            layers += [blocks[-1][0], act()]
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_outputs)]
    inserted.twins(blocks, 2)
    return nn.Sequential(*layers)
