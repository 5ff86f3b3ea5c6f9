/**
 * Which settings the server reads, from the extension manifest (no vscode import, so the tests
 * run it under plain node): the manifest's entries are generated from the server's own
 * definitions (`python -m lsp_server.settings_schema`), so no list is kept here.
 */
export const SECTION = 'quill';

/** Settings that only the extension reads (the server ignores them). */
export const CLIENT_ONLY = new Set(['serverCommand']);

/** The extension manifest's part that lists the settings (`contributes.configuration`). */
export interface Manifest {
  contributes?: { configuration?: { properties?: Record<string, unknown> } };
}

/**
 * The server's setting keys below `quill.` (e.g. `completion.maxTokens`), in the manifest's order.
 */
export function serverKeys(manifest: Manifest): string[] {
  const properties = manifest.contributes?.configuration?.properties ?? {};
  return Object.keys(properties)
    .filter((key) => key.startsWith(`${SECTION}.`))
    .map((key) => key.slice(SECTION.length + 1))
    .filter((key) => !CLIENT_ONLY.has(key));
}

/** The camelCase tree the server reads, `a.b` keys nested as `{a: {b}}`. */
export function settingsTree(keys: string[], get: (key: string) => unknown): Record<string, unknown> {
  const tree: Record<string, unknown> = {};
  for (const key of keys) {
    const parts = key.split('.');
    let node = tree;
    for (const part of parts.slice(0, -1)) {
      node = (node[part] ??= {}) as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = get(key);
  }
  return tree;
}

