"""`nnspec predict --tensor NAME`: the values of a named tensor instead of the model's output.

A named tensor is one a statement of the layers section names (`code = x -> Dense(16)`: the
encoder's embedding of an autoencoder); a graph node's own name (`dense_2`, as `nnspec summary`
lists them) is accepted too. The model computes up to that tensor with its trained weights
(backends/torch_model.tensor_forward); predict writes its values flattened, one column each.
"""
from __future__ import annotations

from dataclasses import replace

from ..diagnostics import UserError, suggest


def named_tensors(graph) -> dict[str, str]:
    """Tensor name -> the graph node holding it: the names statements give (outside blocks), and the inputs."""
    names = {n.alias: n.name for n in graph.nodes if n.alias and not n.scope}
    names.update({name: name for name in graph.inputs})
    return names


def node_of(graph, name: str) -> str:
    """The graph node of the tensor `name`, or a UserError listing the names there are."""
    names = named_tensors(graph)
    if name in names:
        return names[name]
    if any(n.name == name for n in graph.nodes):
        return name
    listed = ", ".join(names) or "none"
    raise UserError(f"--tensor {name}: the model has no tensor of that name; its named tensors are: {listed}",
                    help=suggest(name, list(names)) or "name a tensor with a statement in the layers section, "
                    "e.g. `code = x -> Dense(16)`; the node names of `nnspec summary` work too")


def tensor_predictor(model, checked, name: str):
    """(a module returning the tensor `name`, `checked` as predict should read its outputs: plain values)."""
    from ..backends.torch_model import tensor_forward

    forward = tensor_forward(model, checked.graph, node_of(checked.graph, name))
    return forward, replace(checked, task=None)
