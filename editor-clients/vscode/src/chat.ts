/**
 * `Quill: Chat`, `Quill: Show History`, `Quill: Clear History`: the chat streams into the
 * "Quill Chat" output channel as the server's `{delta}` progress values arrive.
 */
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import {
  ChatParams,
  ClearHistoryRequest,
  HistoryRequest,
  chatStreaming,
} from './protocol';

export class Chat implements vscode.Disposable {
  private readonly channel = vscode.window.createOutputChannel('Quill Chat', 'markdown');

  constructor(private readonly getClient: () => LanguageClient | undefined) {}

  dispose(): void {
    this.channel.dispose();
  }

  /** Ask one question about the active editor, and about its selection when there is one. */
  async ask(): Promise<void> {
    const client = this.readyClient();
    if (!client) {
      return;
    }
    const editor = vscode.window.activeTextEditor;
    const selected = editor !== undefined && !editor.selection.isEmpty;
    const message = await vscode.window.showInputBox({
      prompt: selected ? 'Ask Quill about the selection' : 'Ask Quill',
      placeHolder: selected ? 'Explain this code.' : 'How do I read a file line by line?',
    });
    if (message === undefined) {
      return;
    }
    const params: ChatParams = {
      message: message || 'Explain this code.',
      workspaceFolder: workspaceFolderUri(editor?.document.uri),
    };
    if (editor) {
      params.textDocument = { uri: editor.document.uri.toString() };
      if (selected) {
        params.range = client.code2ProtocolConverter.asRange(editor.selection);
      }
    }
    this.channel.show(true);
    this.channel.appendLine(`## You\n\n${params.message}\n\n## Quill\n`);
    let streamed = '';
    try {
      // Cancelling the notification sends $/cancelRequest; the server stops between tokens.
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'Quill is answering…', cancellable: true },
        (_progress, token) =>
          chatStreaming(
            client,
            params,
            (delta) => {
              streamed += delta;
              this.channel.append(delta);
            },
            token,
          ),
      );
      if (result.reply !== streamed) {
        // A server that does not stream still shows its reply.
        this.channel.append(result.reply.startsWith(streamed) ? result.reply.slice(streamed.length) : `\n${result.reply}`);
      }
      const { promptTokens, completionTokens } = result.usage;
      this.channel.appendLine(`\n\n_${result.finishReason} · ${promptTokens} prompt + ${completionTokens} reply tokens_\n`);
    } catch (error) {
      this.channel.appendLine(`\n\n> Quill: ${String(error)}\n`);
      void vscode.window.showErrorMessage(`Quill chat failed: ${String(error)}`);
    }
  }

  async showHistory(): Promise<void> {
    const client = this.readyClient();
    if (!client) {
      return;
    }
    const { turns } = await client.sendRequest(HistoryRequest, {
      workspaceFolder: workspaceFolderUri(vscode.window.activeTextEditor?.document.uri),
    });
    this.channel.show(true);
    this.channel.appendLine(`# History (${turns.length} turns)\n`);
    for (const turn of turns) {
      const when = new Date(turn.time * 1000).toLocaleString();
      this.channel.appendLine(`## ${turn.role === 'user' ? 'You' : 'Quill'} · ${when}\n\n${turn.content}\n`);
    }
  }

  async clearHistory(): Promise<void> {
    const client = this.readyClient();
    if (!client) {
      return;
    }
    await client.sendRequest(ClearHistoryRequest, {
      workspaceFolder: workspaceFolderUri(vscode.window.activeTextEditor?.document.uri),
    });
    this.channel.clear();
    void vscode.window.showInformationMessage('Quill: chat history cleared.');
  }

  private readyClient(): LanguageClient | undefined {
    const client = this.getClient();
    if (!client || !client.isRunning()) {
      void vscode.window.showWarningMessage('Quill: the language server is not running.');
      return undefined;
    }
    return client;
  }
}

/** The workspace folder the server keys history by: the one holding `uri`, else the first. */
function workspaceFolderUri(uri: vscode.Uri | undefined): string | undefined {
  const folder = (uri && vscode.workspace.getWorkspaceFolder(uri)) ?? vscode.workspace.workspaceFolders?.[0];
  return folder?.uri.toString();
}
