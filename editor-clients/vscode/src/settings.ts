/**
 * The `quill.*` settings as the server reads them: one camelCase tree (`completion` and `chat`
 * nested), sent as `initializationOptions` and, on change, by the language client's
 * `workspace/didChangeConfiguration` for section `quill`.
 */
import * as vscode from 'vscode';

export const SECTION = 'quill';

/** Settings that only the extension reads (the server ignores them). */
const CLIENT_ONLY = new Set(['serverCommand']);

/** The server's settings tree from the user's configuration. */
export function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const tree: Record<string, unknown> = {};
  for (const key of [
    'model',
    'checkpointPath',
    'device',
    'precision',
    'maxContextLength',
    'history',
    'dataDir',
    'cacheDir',
  ]) {
    tree[key] = config.get(key);
  }
  tree.completion = {
    maxTokens: config.get('completion.maxTokens'),
    contextTokens: config.get('completion.contextTokens'),
    multiline: config.get('completion.multiline'),
    waitForModelSeconds: config.get('completion.waitForModelSeconds'),
  };
  tree.chat = {
    maxTokens: config.get('chat.maxTokens'),
    temperature: config.get('chat.temperature'),
    topK: config.get('chat.topK'),
  };
  return tree;
}

/** The command that starts the server over stdio, e.g. `["quill", "serve"]`. */
export function serverCommand(): { command: string; args: string[] } {
  const parts = vscode.workspace.getConfiguration(SECTION).get<string[]>('serverCommand') ?? [];
  const [command, ...args] = parts.length > 0 ? parts : ['quill', 'serve'];
  return { command, args };
}

export function isClientOnly(event: vscode.ConfigurationChangeEvent): boolean {
  return [...CLIENT_ONLY].some((key) => event.affectsConfiguration(`${SECTION}.${key}`));
}
