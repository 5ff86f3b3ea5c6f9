/**
 * Drives the real Quill server over stdio with vscode-languageserver-protocol (the library the
 * extension's client is built on) and the extension's own `src/protocol.ts`: an inline completion
 * (accepted through its `quill.acceptCompletion` command) and a streamed chat whose deltas
 * concatenate to the reply.
 *
 * Environment: QUILL_TEST_MODEL (a model the server can load, e.g. the SmolLM2 GGUF from
 * tests/assets.py; without it the tests skip), QUILL_SERVER_CMD (JSON list, default
 * ["python", "-m", "lsp_server"]), QUILL_CACHE_DIR / QUILL_DATA_DIR (passed on to the server).
 * tests/e2e/test_vscode_client.py sets all of them.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import {
  ConfigurationRequest,
  createProtocolConnection,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InlineCompletionItem,
  InlineCompletionList,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  ProtocolConnection,
  RegistrationRequest,
  ShowMessageNotification,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageserver-protocol/node';
import {
  ACCEPT_COMPLETION_COMMAND,
  HistoryRequest,
  StatusRequest,
  chatStreaming,
} from '../src/protocol';

const MODEL = process.env.QUILL_TEST_MODEL;
const SKIP = MODEL ? false : 'QUILL_TEST_MODEL is not set (tests/e2e/test_vscode_client.py sets it)';
const SOURCE = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n    return fib';

interface Server {
  process: ChildProcess;
  connection: ProtocolConnection;
  stderr: string[];
  messages: string[];
  stopping: boolean;
  /** Settles when the model's load progress ends (or the server dies first). */
  loaded: Promise<void>;
}

function startServer(settings: object): Server {
  const [command, ...args] = JSON.parse(process.env.QUILL_SERVER_CMD ?? '["python", "-m", "lsp_server"]') as string[];
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
  const stderr: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const connection = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const messages: string[] = [];
  let onLoaded!: () => void;
  let onDied!: (error: Error) => void;
  const loaded = new Promise<void>((resolve, reject) => {
    onLoaded = resolve;
    onDied = reject;
  });
  const server: Server = { process: child, connection, stderr, messages, stopping: false, loaded };

  // A server that dies must fail the test with its stderr, not leave requests pending forever.
  const died = (why: string) => {
    onDied(new Error(`quill server ${why}; its stderr:\n${stderr.join('').slice(-4000)}`));
    connection.dispose();
  };
  child.on('error', (error) => died(`could not start (${command}): ${error.message}`));
  child.on('exit', (code, signal) => {
    if (!server.stopping) {
      died(`exited early (code ${code}, signal ${signal})`);
    }
  });
  // The model loads in the background under work-done progress; its `end` means loaded or failed.
  connection.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
    connection.onProgress(WorkDoneProgress.type, params.token, (value) => {
      if (value.kind === 'end') {
        onLoaded();
      }
    });
  });
  connection.onRequest(RegistrationRequest.type, () => undefined);
  connection.onRequest(ConfigurationRequest.type, (params) => params.items.map((item) => (item.section === 'quill' ? settings : null)));
  connection.onNotification(ShowMessageNotification.type, (params) => {
    messages.push(params.message);
  });
  connection.listen();
  return server;
}

describe('quill server through vscode-languageserver-protocol', { skip: SKIP, timeout: 600_000 }, () => {
  let server: Server;
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'quill-node-'));
  const workspaceUri = pathToFileURL(workspace).toString();
  const docUri = pathToFileURL(path.join(workspace, 'fib.py')).toString();
  const settings = { model: MODEL, device: 'cpu', completion: { maxTokens: 24 }, chat: { maxTokens: 48 } };

  before(async () => {
    fs.writeFileSync(path.join(workspace, 'fib.py'), SOURCE);
    server = startServer(settings);
    const init = await server.connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      rootUri: workspaceUri,
      workspaceFolders: [{ uri: workspaceUri, name: 'workspace' }],
      initializationOptions: settings,
      capabilities: {
        window: { workDoneProgress: true },
        workspace: { configuration: true, workspaceFolders: true },
        textDocument: { inlineCompletion: { dynamicRegistration: false }, synchronization: {} },
      },
    });
    assert.ok(init.capabilities.inlineCompletionProvider, 'the server advertises inlineCompletionProvider');
    assert.ok(
      init.capabilities.executeCommandProvider?.commands.includes(ACCEPT_COMPLETION_COMMAND),
      `the server advertises ${ACCEPT_COMPLETION_COMMAND}`,
    );
    await server.connection.sendNotification(InitializedNotification.type, {});
    await server.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri: docUri, languageId: 'python', version: 1, text: SOURCE },
    });
    await server.loaded;
    const status = await server.connection.sendRequest(StatusRequest);
    assert.equal(status.state, 'ready', `the model loaded: ${JSON.stringify(status)}`);
    assert.deepEqual(server.messages.filter((m) => m.includes('Setting `')), [], 'the settings were accepted');
  });

  after(async () => {
    if (!server) {
      return;
    }
    server.stopping = true;
    const exited = new Promise<number | null>((resolve) => server.process.once('exit', resolve));
    await server.connection.sendRequest(ShutdownRequest.type);
    await server.connection.sendNotification(ExitNotification.type);
    const code = await exited;
    server.connection.dispose();
    assert.equal(code, 0, `the server exits cleanly after shutdown/exit; stderr:\n${server.stderr.join('').slice(-2000)}`);
  });

  it('answers an inline completion whose accept command the server counts', async () => {
    const lines = SOURCE.split('\n');
    const position = { line: lines.length - 1, character: lines[lines.length - 1].length };
    const before = await server.connection.sendRequest(StatusRequest);
    const result = await server.connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri: docUri },
      position,
      context: { triggerKind: InlineCompletionTriggerKind.Invoked },
    });
    const items: InlineCompletionItem[] = Array.isArray(result) ? result : (result as InlineCompletionList | null)?.items ?? [];
    assert.ok(items.length > 0, `at least one suggestion; stderr:\n${server.stderr.join('').slice(-2000)}`);
    const item = items[0];
    const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
    assert.ok(text.trim().length > 0, `the suggestion has text: ${JSON.stringify(item)}`);
    assert.equal(item.command?.command, ACCEPT_COMPLETION_COMMAND);

    await server.connection.sendRequest(ExecuteCommandRequest.type, {
      command: item.command!.command,
      arguments: item.command!.arguments,
    });
    const after = await server.connection.sendRequest(StatusRequest);
    assert.equal(after.acceptance.accepted, before.acceptance.accepted + 1, 'the accepted suggestion is counted');
    assert.ok(after.acceptance.shown > before.acceptance.shown, 'the shown suggestion is counted');
  });

  it('streams a chat reply whose deltas concatenate to the reply', async () => {
    const deltas: string[] = [];
    let answered = false;
    const message = 'What does the function fibonacci do? Answer in one sentence.';
    const pending = chatStreaming(
      server.connection,
      { message, textDocument: { uri: docUri }, workspaceFolder: workspaceUri },
      (delta) => {
        assert.equal(answered, false, 'deltas arrive before the response');
        deltas.push(delta);
      },
    );
    const result = await pending;
    answered = true;
    assert.ok(result.reply.trim().length > 0, 'the reply has text');
    assert.ok(result.usage.completionTokens >= 2, `a reply of several tokens: ${JSON.stringify(result)}`);
    assert.ok(deltas.length >= 2, `the reply arrived in several deltas (got ${deltas.length})`);
    assert.equal(deltas.join(''), result.reply);
    assert.ok(['stop', 'length'].includes(result.finishReason));

    const { turns } = await server.connection.sendRequest(HistoryRequest, { workspaceFolder: workspaceUri });
    const last = turns.slice(-2);
    assert.deepEqual(
      last.map((t) => [t.role, t.content]),
      [
        ['user', message],
        ['assistant', result.reply],
      ],
      'the turn is kept in the history of the workspace folder',
    );
  });
});
