/**
 * The `quill.*` settings as the server reads them: one camelCase tree (`completion` and `chat`
 * nested), sent as `initializationOptions` and, on change, by the language client's
 * `workspace/didChangeConfiguration` for section `quill`.
 */
import * as vscode from 'vscode';
import { CLIENT_ONLY, Manifest, SECTION, serverKeys, settingsTree } from './settingKeys';

export { Manifest, SECTION };

/** The server's settings tree from the user's configuration. */
export function serverSettings(manifest: Manifest): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  return settingsTree(serverKeys(manifest), (key) => config.get(key));
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
