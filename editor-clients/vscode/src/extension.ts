/**
 * Quill for VS Code: starts `quill serve` over stdio with vscode-languageclient, which turns the
 * server's `inlineCompletionProvider` into VS Code inline completions (ghost text, Tab to accept;
 * each item's `quill.acceptCompletion` command runs on accept through the client's
 * executeCommand support), shows model progress, and adds the chat, history and status commands.
 */
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';
import { Chat } from './chat';
import { Manifest, SECTION, isClientOnly, serverCommand, serverSettings } from './settings';
import { StatusBar, describe } from './statusBar';

let client: LanguageClient | undefined;

function createClient(manifest: Manifest): LanguageClient {
  const { command, args } = serverCommand();
  const serverOptions: ServerOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions: LanguageClientOptions = {
    // Every file and untitled buffer: completions are not tied to one language.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: serverSettings(manifest),
    synchronize: { configurationSection: SECTION },
    outputChannelName: 'Quill Language Server',
  };
  return new LanguageClient('quill', 'Quill', serverOptions, clientOptions);
}

async function start(statusBar: StatusBar, manifest: Manifest): Promise<void> {
  client = createClient(manifest);
  try {
    await client.start();
  } catch (error) {
    void vscode.window.showErrorMessage(
      `Quill: could not start "${serverCommand().command}" (${String(error)}). Install it with ` +
        '`pip install quill-lsp` or set quill.serverCommand.',
    );
  }
  void statusBar.refresh();
}

async function stop(): Promise<void> {
  const running = client;
  client = undefined;
  if (running) {
    await running.stop();
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const manifest = context.extension.packageJSON as Manifest;
  const getClient = () => client;
  const statusBar = new StatusBar(getClient);
  const chat = new Chat(getClient);
  context.subscriptions.push(
    statusBar,
    chat,
    vscode.commands.registerCommand('quill.chat', () => chat.ask()),
    vscode.commands.registerCommand('quill.showHistory', () => chat.showHistory()),
    vscode.commands.registerCommand('quill.clearHistory', () => chat.clearHistory()),
    vscode.commands.registerCommand('quill.showStatus', async () => {
      const status = await statusBar.refresh();
      if (status) {
        void vscode.window.showInformationMessage(describe(status).tooltip);
      }
    }),
    vscode.commands.registerCommand('quill.restart', async () => {
      await stop();
      await start(statusBar, manifest);
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      // The client forwards quill.* changes itself; a new server command needs a new server.
      if (isClientOnly(event)) {
        await stop();
        await start(statusBar, manifest);
      } else if (event.affectsConfiguration(SECTION)) {
        void statusBar.refresh();
      }
    }),
  );
  await start(statusBar, manifest);
}

export function deactivate(): Thenable<void> | undefined {
  return stop();
}
