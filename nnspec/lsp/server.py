"""The language server: pygls over stdio, each LSP request answered by a feature module.

Every open document is checked again on each change (the whole text: the checker is fast enough
for a 1,000-node spec to answer within an editor's typing pause; bench/lsp_latency.py measures
it) and its diagnostics published at once; hover, completion, definition and symbols read the
latest check of the document.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from ..extras import require
from .analysis import Analysis, analyze

NAME = "nnspec"


def build_server():
    """A pygls LanguageServer with nnspec's features (raises UserError when pygls is missing)."""
    lsp_server = require("pygls.lsp.server")
    from lsprotocol import types

    from .completion import complete
    from .definition import definition
    from .diagnostics import to_lsp
    from .formatting import formatting
    from .hover import hover
    from .symbols import symbols

    server = lsp_server.LanguageServer(NAME, _version(), text_document_sync_kind=types.TextDocumentSyncKind.Full)
    docs: dict[str, Analysis] = {}

    def refresh(uri: str, version: int | None) -> None:
        text = server.workspace.get_text_document(uri).source
        docs[uri] = analyze(text, _filename(uri), docs.get(uri))
        diags = to_lsp(docs[uri].result.diagnostics, uri, docs[uri].lines)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version))

    def current(uri: str) -> Analysis:
        if uri not in docs:  # a request for a document the client never opened: read it now
            refresh(uri, None)
        return docs[uri]

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: types.DidOpenTextDocumentParams) -> None:
        refresh(params.text_document.uri, params.text_document.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: types.DidChangeTextDocumentParams) -> None:
        refresh(params.text_document.uri, params.text_document.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: types.DidCloseTextDocumentParams) -> None:
        docs.pop(params.text_document.uri, None)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(ls, params: types.HoverParams):
        return hover(current(params.text_document.uri), params.position.line, params.position.character)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ">", " ", ","]))
    def on_completion(ls, params: types.CompletionParams):
        return complete(current(params.text_document.uri), params.position.line, params.position.character)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def on_definition(ls, params: types.DefinitionParams):
        uri = params.text_document.uri
        return definition(current(uri), uri, params.position.line, params.position.character)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def on_symbols(ls, params: types.DocumentSymbolParams):
        return symbols(current(params.text_document.uri).spec)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(ls, params: types.DocumentFormattingParams):
        uri = params.text_document.uri
        doc = current(uri)
        return formatting(doc.text, _filename(uri), doc.result)  # the held check of that very text

    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnspec")
    except PackageNotFoundError:  # a source checkout that is not installed
        return "0+unknown"


def _filename(uri: str) -> str:
    parsed = urlparse(uri)
    return str(Path(unquote(parsed.path))) if parsed.scheme == "file" else uri


def serve() -> None:
    """Answer LSP requests on stdin/stdout until the client says exit."""
    build_server().start_io()
