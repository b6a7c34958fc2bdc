"""`nnspec lsp`: a language server for `.nn` files (pygls, over stdio).

server.py wires the protocol; each feature is a small module that reads the checker's result
(`analysis.Analysis`) and answers in lsprotocol's types:

- diagnostics.py: the checker's diagnostics, with codes, help and related locations
- hover.py: a layer's output shape, parameter count and catalog documentation
- completion.py: layer, activation, loss, metric, optimizer, setting and argument names
- definition.py: go to a block's or a named tensor's definition
- symbols.py: the outline (inputs, blocks, sections, named tensors)
- formatting.py: the whole document through `nnspec fmt`

Only server.py imports pygls, through `nnspec.extras.require`; the feature modules use
lsprotocol (which pygls brings) and are imported after it.
"""
