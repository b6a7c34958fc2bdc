// The nnspec extension's client: it starts `nnspec lsp` (the command is the `nnspec.server.command`
// setting) over stdio for .nn files; highlighting comes from syntaxes/nnspec.tmLanguage.json.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("nnspec").get("server.command");
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("nnspec", "nnspec", server, {
    documentSelector: [{ scheme: "file", language: "nnspec" }, { scheme: "untitled", language: "nnspec" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
