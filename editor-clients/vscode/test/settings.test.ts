/**
 * The settings tree the extension sends to the server, derived from the real package.json: every
 * server setting is there, nested as the server reads it, and the extension's own ones are not.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Manifest, serverKeys, settingsTree } from '../src/settingKeys';

const manifest = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'),
) as Manifest;

describe('settings from package.json', () => {
  it('lists the server settings and leaves out the client-only ones', () => {
    const keys = serverKeys(manifest);
    for (const key of ['model', 'precision', 'completion.maxTokens', 'completion.stopEarly', 'chat.topK']) {
      assert.ok(keys.includes(key), `${key} missing from ${keys.join(', ')}`);
    }
    assert.ok(!keys.includes('serverCommand'));
  });

  it('nests dotted keys as the server reads them', () => {
    const tree = settingsTree(['model', 'completion.maxTokens', 'completion.multiline', 'chat.topK'], (key) =>
      key === 'model' ? 'smollm2' : key === 'completion.maxTokens' ? 16 : key === 'chat.topK' ? null : true,
    );
    assert.deepEqual(tree, { model: 'smollm2', completion: { maxTokens: 16, multiline: true }, chat: { topK: null } });
  });
});
